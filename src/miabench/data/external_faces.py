"""External non-member face sets (MINT's published protocol): other datasets' images.

``data.nonmembers`` names one or more aligned face sets (identity folders or image lists)
whose images replace a face dataset's non-member side (see
:class:`~miabench.data.faces.IdentityDataset`); :func:`external_entries` lists them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miabench.data.aligned import (
    check_file_name,
    listed_image,
    read_text_lines,
)

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


#: layouts of an external non-member set (``data.nonmembers[i].layout``)
EXTERNAL_LAYOUTS = ("folder", "list")
#: keys of one ``data.nonmembers`` entry
EXTERNAL_KEYS = ("name", "root", "layout", "list", "extensions")


@dataclass(frozen=True)
class ExternalKey:
    """Where an external non-member image is (a file), and which set it belongs to."""

    path: Path
    set_name: str


def _external_spec(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    spec = dict(spec)
    unknown = sorted(set(spec) - set(EXTERNAL_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected {list(EXTERNAL_KEYS)}")
    for key in ("name", "root"):
        if not spec.get(key):
            raise ValueError(f"{where}: set {where}.{key}")
    name = str(spec["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"{where}.name {name!r}: use letters, digits, '_', '.', '-' only")
    layout = spec.get("layout", "folder")
    if layout not in EXTERNAL_LAYOUTS:
        raise ValueError(f"{where}.layout must be one of {EXTERNAL_LAYOUTS}, got {layout!r}")
    if layout == "list" and not spec.get("list"):
        raise ValueError(f"{where}: layout 'list' needs {where}.list (the image-list file)")
    spec["layout"] = layout
    return spec


def external_entries(
    specs: Sequence[Mapping[str, Any]], config_key: str = "data.nonmembers"
) -> list[tuple[str, str, ExternalKey]]:
    """``(sample_id, identity, key)`` of every image of the external non-member sets.

    Each entry of ``specs`` is ``{name, root, layout, list, extensions}``:

    - ``layout: folder`` (default): ``root/<identity>/<image>``, as
      :class:`~miabench.data.faces.ImageFolderFaces` reads (e.g. an aligned IJB-C or Adience export);
    - ``layout: list``: ``list`` is a text file (relative to ``root`` unless absolute) with one
      image per line, ``<path relative to root> [<identity>]``; an image without an identity
      label (FDDB, GAN-generated faces) is its own identity.

    An external identity is named ``<identity>@<name>``, so it is the first component of the
    sample id (``<identity>@<name>/<file>``) and never collides with a member identity or
    another set's.

    Raises:
        ValueError: a malformed entry, list line or duplicate set name (names the config key
            and file).
        FileNotFoundError: a missing root, list or listed image, or a set without images.
    """
    if isinstance(specs, (str, bytes)) or isinstance(specs, Mapping):
        raise ValueError(
            f"{config_key} must be a list of sets ({{name, root, layout}}), got {specs!r}"
        )
    entries: list[tuple[str, str, ExternalKey]] = []
    seen: set[str] = set()
    for i, raw in enumerate(specs):
        where = f"{config_key}[{i}]"
        spec = _external_spec(raw, where)
        name, root = str(spec["name"]), Path(os.path.expanduser(str(spec["root"])))
        if name in seen:
            raise ValueError(f"{where}.name {name!r} is used by another external set")
        seen.add(name)
        if not root.is_dir():
            raise FileNotFoundError(f"{where}.root: {root} is not a folder")
        extensions = tuple(e.lower() for e in spec.get("extensions") or DEFAULT_EXTENSIONS)
        found: list[tuple[str, str, ExternalKey]] = []
        if spec["layout"] == "folder":
            for folder in sorted(p for p in root.iterdir() if p.is_dir()):
                identity = f"{check_file_name(folder).name}@{name}"
                found += [
                    (f"{identity}/{path.name}", identity, ExternalKey(path, name))
                    for path in sorted(folder.iterdir())
                    if listed_image(path, extensions)
                ]
        else:
            listing = Path(os.path.expanduser(str(spec["list"])))
            listing = listing if listing.is_absolute() else root / listing
            if not listing.is_file():
                raise FileNotFoundError(f"{where}.list: {listing} does not exist")
            for line_no, line in enumerate(read_text_lines(listing), start=1):
                fields = line.split()
                if not fields or line.lstrip().startswith("#"):
                    continue
                if len(fields) > 2:
                    raise ValueError(
                        f"{listing}, line {line_no}: expected '<image path> [<identity>]', got "
                        f"{line!r}"
                    )
                relative = Path(fields[0])
                path = root / relative
                if relative.is_absolute() or ".." in relative.parts:
                    raise ValueError(f"{listing}, line {line_no}: {fields[0]} is not under {root}")
                if not path.is_file():
                    raise FileNotFoundError(f"{listing}, line {line_no}: {path} does not exist")
                label = fields[1] if len(fields) == 2 else relative.with_suffix("").as_posix()
                identity = f"{label.replace('/', '_')}@{name}"
                found.append(
                    (f"{identity}/{relative.as_posix()}", identity, ExternalKey(path, name))
                )
        if not found:
            raise FileNotFoundError(
                f"{where}: {root} holds no images ({spec['layout']} layout, extensions "
                f"{list(extensions)})"
            )
        entries += found
    ids = [e[0] for e in entries]
    if len(set(ids)) != len(ids):
        duplicate = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"{config_key}: sample ids listed twice: {duplicate}")
    return entries
