"""An on-disk chunked store of activations for auditors that learn from them.

Victims return activations of named layers as signals (``miabench.victims.signals``).
:class:`ActivationStore` holds what an auditor extracted from its training samples in
chunks of a few thousand rows on disk, so 100K samples of full activation maps never sit in memory at once, and several
training epochs stream them back.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from miabench.utils.hashing import stable_hash
from miabench.utils.io import atomic_write, atomic_write_json, read_json


def sample_set_hash(sample_ids: Sequence[str]) -> str:
    """Order-sensitive hash of a list of sample ids."""
    h = hashlib.sha256()
    for sid in sample_ids:
        h.update(sid.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


class ActivationStore:
    """Chunks of ``(features, labels)`` written under a cache folder, keyed by what made them.

    Rows are appended into a private temporary folder; :meth:`finish` names it after the key
    (victim fingerprint, layers, reduction, the exact sample ids in order), moving it into
    place in one rename, so a folder under its key is always complete. A later fit of the
    same auditor inputs finds it there (:meth:`open`) and streams it instead of rewriting.

    Args:
        root: cache folder (e.g. ``outputs/cache/activations``).
        chunk_rows: rows per chunk file.
        dtype: storage dtype (float16 halves the disk of full activation maps).
    """

    def __init__(
        self, root: str | Path, chunk_rows: int = 4096, dtype: torch.dtype = torch.float16
    ) -> None:
        self.root = Path(root)
        self.chunk_rows = chunk_rows
        self.dtype = dtype
        self._tmp: Path | None = None
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._n_pending = 0
        self._n_chunks = 0
        self._ids: list[str] = []
        self.directory: Path | None = None

    @staticmethod
    def key(fingerprint: str, spec: Mapping[str, Any], sample_ids: Sequence[str]) -> str:
        """Cache key: victim fingerprint + feature spec (layers, reduction) + sample set."""
        return stable_hash(
            {"victim": fingerprint, "spec": dict(spec), "samples": sample_set_hash(sample_ids)}
        )

    def append(
        self, features: torch.Tensor, labels: torch.Tensor, sample_ids: Sequence[str]
    ) -> None:
        """Buffer rows and flush full chunks to disk."""
        if self._tmp is None:
            self._tmp = self.root / f".tmp-{uuid.uuid4().hex}"
            self._tmp.mkdir(parents=True)
        self._pending.append((features.detach().to("cpu", self.dtype), labels.detach().cpu()))
        self._n_pending += len(labels)
        self._ids.extend(sample_ids)
        while self._n_pending >= self.chunk_rows:
            self._flush(self.chunk_rows)

    def _flush(self, rows: int) -> None:
        x = torch.cat([f for f, _ in self._pending])
        y = torch.cat([lab for _, lab in self._pending])
        head = (x[:rows].clone(), y[:rows].clone())
        self._pending = [(x[rows:], y[rows:])] if len(y) > rows else []
        self._n_pending = len(y) - rows
        path = self._tmp / f"chunk_{self._n_chunks:05d}.pt"  # type: ignore[operator]
        atomic_write(path, lambda p: torch.save({"x": head[0], "y": head[1]}, p))
        self._n_chunks += 1

    def finish(self, fingerprint: str, spec: Mapping[str, Any]) -> Path:
        """Flush the rest and move the chunks under their key; returns that folder."""
        if self._tmp is None:
            raise ValueError("no rows were appended to the activation store")
        if self._n_pending:
            self._flush(self._n_pending)
        key = self.key(fingerprint, spec, self._ids)
        target = self.root / key
        atomic_write_json(
            self._tmp / "meta.json",
            {
                "victim": fingerprint,
                "spec": dict(spec),
                "n": len(self._ids),
                "chunks": self._n_chunks,
                "samples": sample_set_hash(self._ids),
            },
        )
        if target.exists():
            shutil.rmtree(self._tmp)  # same inputs extracted before: keep the first copy
        else:
            self._tmp.rename(target)
        self._tmp, self.directory = None, target
        return target

    def abort(self) -> None:
        """Drop a partial extraction."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @staticmethod
    def open(directory: str | Path) -> dict[str, Any]:
        """Meta of a finished store folder (raises FileNotFoundError if incomplete)."""
        meta = Path(directory) / "meta.json"
        if not meta.is_file():
            raise FileNotFoundError(f"{directory} is not a finished activation store")
        return read_json(meta)

    @staticmethod
    def chunks(
        directory: str | Path, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x float32, y)`` chunk by chunk, in random chunk order with a generator."""
        files = sorted(Path(directory).glob("chunk_*.pt"))
        order = (
            torch.randperm(len(files), generator=generator).tolist()
            if generator is not None
            else range(len(files))
        )
        for i in order:
            chunk = torch.load(files[i], map_location="cpu", weights_only=True)
            yield chunk["x"].float(), chunk["y"]
