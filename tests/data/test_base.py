"""The dataset contract: MembershipDataset declares records/subset/__repr__ once."""

from __future__ import annotations

from typing import Any

import pytest

from miabench.data.base import MembershipDataset
from miabench.data.membership import SampleRecord


class Letters(MembershipDataset):
    """A tiny in-memory dataset: one entry per letter, records computed on first use."""

    entries_attr = "_letters"

    def __init__(self, letters: str) -> None:
        self._letters = list(letters)
        self._records: list[SampleRecord] | None = None
        self.computed = 0

    def __len__(self) -> int:
        return len(self._letters)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"sample_id": self._letters[index]}

    def records(self) -> list[SampleRecord]:
        if self._records is None:
            self.computed += 1
            self._records = [SampleRecord(c, f"/{c}", f"sha-{c}") for c in self._letters]
        return list(self._records)

    def entry_id(self, entry: str) -> str:
        return entry

    def repr_fields(self) -> list[str]:
        return [f"n={len(self)}"]


def test_a_dataset_without_records_cannot_be_instantiated() -> None:
    class NoRecords(MembershipDataset):
        entries_attr = "_x"

        def entry_id(self, entry: Any) -> str:
            return str(entry)

        def repr_fields(self) -> list[str]:
            return []

    with pytest.raises(TypeError, match="records"):
        NoRecords()


def test_subset_keeps_the_given_order_and_shares_computed_records() -> None:
    data = Letters("abcde")
    data.records()
    view = data.subset(["d", "a", "c"])
    assert [view[i]["sample_id"] for i in range(len(view))] == ["d", "a", "c"]
    assert [r.sample_id for r in view.records()] == ["d", "a", "c"]
    assert view.computed == 1  # the view reused the parent's records
    assert len(data) == 5  # the parent is untouched
    assert repr(view) == "Letters(n=3)"


def test_subset_refuses_unknown_ids_naming_them_and_where() -> None:
    data = Letters("abc")
    with pytest.raises(ValueError, match=r"2 sample id\(s\) not in Letters\(n=3\): x, y"):
        data.subset(["a", "x", "y"])
