"""The dataset contract every miabench dataset keeps, declared once.

A membership split is drawn from a dataset's :meth:`~MembershipDataset.records` (one
:class:`~miabench.data.membership.SampleRecord` per sample: id, path, content hash), and the
datamodule then serves each role through :meth:`~MembershipDataset.subset`. Items are dicts
with at least ``sample_id`` and ``input`` (see ``docs/architecture.md``).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

from torch.utils.data import Dataset

from miabench.data.membership import SampleRecord

#: a dataset type (what :meth:`MembershipDataset.subset` returns)
_D = TypeVar("_D", bound="MembershipDataset")


class MembershipDataset(Dataset, ABC):
    """A dataset a membership split can be drawn from.

    A subclass keeps one entry per sample in the list attribute named by
    :attr:`entries_attr` (files, annotations, ...), in its served order, and implements
    :meth:`records`, :meth:`entry_id` and :meth:`repr_fields`. ``self._records`` caches the
    records (None until computed) so that :meth:`subset` views share the hashes already
    computed instead of decoding every file again.
    """

    #: name of the list attribute holding one entry per sample (what :meth:`subset` cuts)
    entries_attr: ClassVar[str]
    _records: list[SampleRecord] | None

    @abstractmethod
    def records(self) -> list[SampleRecord]:
        """One record per sample, in the served order; ``sha256`` hashes its content."""

    @abstractmethod
    def entry_id(self, entry: Any) -> str:
        """Sample id of one entry of :attr:`entries_attr`."""

    @abstractmethod
    def repr_fields(self) -> list[str]:
        """What :meth:`__repr__` shows between the parentheses, in order."""

    def searched(self) -> str:
        """Where this dataset's samples come from, for the error naming unknown ids."""
        return repr(self)

    def subset(self: _D, sample_ids: Iterable[str]) -> _D:
        """A view restricted to ``sample_ids``, in the order given.

        A shallow copy: the entries and the cached records (if computed) are cut to the
        requested samples; everything else is shared with this dataset.

        Raises:
            ValueError: naming (up to ten) ids that are not in this dataset, and where it
                searched (:meth:`searched`: a folder, an annotation file, the repr).
        """
        sample_ids = list(sample_ids)
        entries = getattr(self, self.entries_attr)
        index = {self.entry_id(entry): i for i, entry in enumerate(entries)}
        unknown = [s for s in sample_ids if s not in index]
        if unknown:
            shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise ValueError(f"{len(unknown)} sample id(s) not in {self.searched()}: {shown}")
        positions = [index[s] for s in sample_ids]
        view = copy.copy(self)
        setattr(view, self.entries_attr, [entries[i] for i in positions])
        records = getattr(self, "_records", None)
        view._records = None if records is None else [records[i] for i in positions]
        return view

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.repr_fields())})"
