"""The whole preparation of one dataset: download or take, verify, unpack, mark done."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from miabench.data_sources.archives import match_archive, unpack
from miabench.data_sources.download import download, mirrored, verify
from miabench.data_sources.sources import DatasetSource, PrepareError, SourceFile
from miabench.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)


def _done_marker(downloads: Path, dataset: DatasetSource, source: SourceFile) -> Path:
    # beside the downloads, not in the dataset folder, whose readers list its sub-folders
    return downloads / "prepared" / f"{dataset.name}--{source.filename}.json"


def prepare(
    dataset: DatasetSource,
    data_dir: str | os.PathLike,
    archives: Sequence[str | os.PathLike] = (),
    root: str | os.PathLike | None = None,
    mirror: str | None = None,
) -> Path:
    """Download (or take from ``archives``), verify and unpack every file of ``dataset``.

    Args:
        dataset: the registry entry.
        data_dir: the data folder (``paths.data_dir``); downloads go to ``data_dir/downloads``.
        archives: files the user downloaded (login-only datasets, or no internet here).
        root: the dataset folder; default ``data_dir/dataset.root``.
        mirror: a site mirror replacing the scheme and host of every URL.

    Returns:
        The dataset folder.

    Raises:
        PrepareError: a failed download, a checksum mismatch, a wrong archive, or a
            login-only file not given with ``--archive``.
    """
    data_dir = Path(data_dir)
    root = Path(root) if root is not None else data_dir / dataset.root
    downloads = data_dir / "downloads"
    ledger = downloads / "checksums.json"
    given: dict[str, Path] = {}
    for archive in archives:
        archive = Path(archive).expanduser()
        if not archive.is_file():
            raise PrepareError(f"--archive {archive}: no such file")
        source = match_archive(archive, dataset.sources)
        given[source.filename] = archive
    for source in dataset.sources:
        marker = _done_marker(downloads, dataset, source)
        done = read_json(marker) if marker.is_file() else {}
        if source.filename not in given and done.get("root") == str(root.resolve()):
            log.info("%s: already unpacked in %s", source.filename, root)
            continue
        if source.filename in given:
            path = given[source.filename]
        elif source.url is not None:
            path = downloads / source.filename
            if not path.is_file():
                download(mirrored(source.url, mirror), path)
        else:
            raise PrepareError(
                f"{dataset.name}: {source.filename} cannot be downloaded without a login or a "
                f"browser; get it from {dataset.homepage or 'the publisher'} and run "
                f"`python -m miabench.prepare_data {dataset.name} --archive "
                f"/path/to/{source.filename}`"
            )
        try:
            how = verify(path, source, ledger)
        except PrepareError:
            if source.filename not in given:
                # a bad download is removed so the next run fetches it afresh
                path.unlink(missing_ok=True)
            raise
        log.info("%s: %s", source.filename, how)
        print(f"[prepare_data] {source.filename}: {how}")
        count = unpack(path, source, root)
        atomic_write_json(
            marker,
            {"root": str(root.resolve()), "file": str(path), "files": count, "check": how},
        )
        print(f"[prepare_data] {source.filename}: {count} file(s) → {root / source.dest}")
    return root
