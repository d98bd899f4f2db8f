"""The dataset registry: what files a dataset has and where they go."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

REGISTRY = Path(__file__).parent / "registry"
#: Bytes per read while downloading and hashing.
CHUNK = 1 << 20


class PrepareError(RuntimeError):
    """A download, checksum or archive that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a dataset.

    Args:
        filename: name of the downloaded file (and of the file a user passes with --archive).
        url: where to download it; None when it needs a login or a browser (--archive only).
        md5: checksum published for it (MD5), if any.
        sha256: checksum published for it (SHA-256), if any.
        expect: glob patterns (``/``-separated, relative to the dataset root after unpacking)
            that the file must provide; an archive is recognised and checked by them.
        dest: folder under the dataset root where the content goes (``.`` = the root).
        unpack: False for a plain file (e.g. LFW's pairs.txt), copied to ``dest/filename``.
    """

    filename: str
    url: str | None = None
    md5: str | None = None
    sha256: str | None = None
    expect: tuple[str, ...] = ()
    dest: str = "."
    unpack: bool = True

    @property
    def published(self) -> tuple[str, str] | None:
        """``(algorithm, hex digest)`` of the published checksum, if any."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.md5:
            return "md5", self.md5.lower()
        return None


@dataclass
class DatasetSource:
    """A dataset: its files and where they go.

    Args:
        name: registry name (``python -m miabench.prepare_data <name>``).
        root: dataset folder relative to the data folder (the data configs' default ``root``).
        files: the :class:`SourceFile` fields of each file.
        homepage: where to read the licence and, for login-only files, download them.
        data_configs: the ``data=`` configs that read this layout (printed afterwards).
        note: one line shown after preparing (e.g. which overrides to use).
    """

    name: str
    root: str
    files: Sequence[Mapping[str, Any]]
    homepage: str = ""
    data_configs: Sequence[str] = ()
    note: str = ""
    sources: list[SourceFile] = field(init=False)

    def __post_init__(self) -> None:
        self.sources = []
        for spec in self.files:
            spec = dict(spec)
            spec["expect"] = tuple(spec.get("expect") or ())
            self.sources.append(SourceFile(**spec))

    @property
    def needs_archive(self) -> bool:
        """Whether some file cannot be downloaded here (login or browser needed)."""
        return any(s.url is None for s in self.sources)


def available() -> list[str]:
    """Names of the registered datasets."""
    return sorted(p.stem for p in REGISTRY.glob("*.yaml"))


def load_source(name: str, registry: str | os.PathLike = REGISTRY) -> DatasetSource:
    """The registered dataset ``name``.

    Raises:
        KeyError: naming the registered datasets when ``name`` is not one.
    """
    from hydra.utils import instantiate  # noqa: PLC0415 - keeps `--help` light

    path = Path(registry) / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(available())}")
    return instantiate(OmegaConf.load(path), _convert_="all")
