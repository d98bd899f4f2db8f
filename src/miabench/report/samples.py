"""The most exposed samples: the members an attack scores highest, as thumbnails.

The images are found through the run's split manifest (``<cache_dir>/splits/<data>-*.csv``,
the one whose hash is the run's ``manifest_sha256``), which names each sample's file and
the SHA-256 its reader computed; an image is shown only when its decoded pixels have that
hash (the paired-image readers hash exactly those; readers that also hash a label map or a
crop cannot be verified from the file, and their images are not shown). Without a matching
manifest the file is looked up as ``<data root>/<sample_id>`` (inside the root only) and
shown marked *unverified*. Files that are missing, not images,
or larger than :data:`MAX_PIXELS` are named in the report, never fatal.
"""

from __future__ import annotations

import base64
import glob
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

log = logging.getLogger(__name__)

#: images above this many pixels are not decoded (a thumbnail needs none that large)
MAX_PIXELS = 4096 * 4096
#: thumbnails are scaled down to this height (pixels); small images are kept as they are
THUMB_HEIGHT = 128


@dataclass
class Exposed:
    """One exposed member.

    Attributes:
        sample_id: the sample.
        score: its attack score.
        flagged_at: share of test non-members scoring at least as high: the false-alarm
            rate at which a threshold would still flag this member.
        image: a ``data:image/png;base64,...`` URI, or None when it could not be shown.
        status: ``verified``, ``unverified`` or why the image is not shown.
    """

    sample_id: str
    score: float
    flagged_at: float
    image: str | None
    status: str


def _manifest_paths(run: dict[str, Any], cache_dir: Path) -> tuple[dict[str, tuple], str]:
    """``sample_id -> (path, sha256)`` from the split manifest whose hash is the run's."""
    from miabench.data.membership import Manifest  # numpy-only; kept local with its reader
    from miabench.utils.io import read_verified

    wanted = run.get("manifest_sha256")
    pattern = str(cache_dir / "splits" / f"{run.get('data_name')}-*.csv")
    if not wanted:
        return {}, "results.json records no manifest_sha256"
    for path in sorted(glob.glob(pattern)):
        try:
            manifest = Manifest.from_csv(read_verified(path))
        except (OSError, ValueError) as err:
            log.warning("report: skipping split manifest %s (%s)", path, err)
            continue
        if manifest.sha256() == wanted:
            return {r.sample_id: (Path(r.path), r.sha256) for r in manifest.rows}, str(path)
    return {}, f"no split manifest with sha256 {wanted[:12]}… matched {pattern}"


def _inside(root: Path, sample_id: str) -> Path | None:
    """``root / sample_id`` when it stays inside ``root`` (a sample id is not trusted)."""
    try:
        path = (root / sample_id).resolve()
        return path if path.is_relative_to(root.resolve()) else None
    except (OSError, ValueError):
        return None


def _thumbnail(path: Path) -> tuple[str, np.ndarray]:
    """The image at ``path`` as a PNG data URI (at most :data:`THUMB_HEIGHT` high) and its
    decoded RGB pixels (for the content hash)."""
    # the decoding the manifest's hashes came from (imports torchvision: only when an image
    # is found; moving it to a torch-free module would change every aligned victim's key)
    from miabench.data.aligned import read_rgb

    with Image.open(path) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"{width}x{height} pixels, above the {MAX_PIXELS} the report decodes")
    pixels = read_rgb(path, "rgb")
    thumb = Image.fromarray(pixels)
    if thumb.height > THUMB_HEIGHT:
        thumb = thumb.resize(
            (max(1, round(thumb.width * THUMB_HEIGHT / thumb.height)), THUMB_HEIGHT),
            Image.Resampling.LANCZOS,
        )
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), pixels


def exposed_members(
    run: dict[str, Any],
    test: pd.DataFrame,
    attack: str,
    data_dir: Path,
    cache_dir: Path,
    n: int = 8,
) -> tuple[list[Exposed], list[str]]:
    """The ``n`` test members ``attack`` scores highest, with thumbnails where found.

    Args:
        run: results.json's ``run`` entry (``data_name``, ``data_root``, ``manifest_sha256``).
        test: the test rows of scores.csv.
        attack: the attack whose ``<attack>.score`` ranks them.
        data_dir: where embedded datasets live (``paths.data_dir``).
        cache_dir: where split manifests live (``paths.cache_dir``).
        n: how many.

    Returns:
        The exposed members (highest score first) and notes on where their images came
        from or why they are missing.
    """
    from miabench.utils.hashing import sha256_array

    column = f"{attack}.score"
    nonmember = np.sort(test.loc[test["label"] == 0, column].to_numpy(dtype=float))
    members = test[test["label"] == 1].sort_values(column, ascending=False, kind="stable").head(n)
    by_id, source = _manifest_paths(run, cache_dir)
    notes = [f"images located through the split manifest {source}" if by_id else source]
    root = None
    if not by_id:
        data_root = str(run.get("data_root") or "")
        root = (
            data_dir / str(run.get("data_name"))
            if data_root in ("", "embedded")
            else Path(data_root)
        )
        notes.append(f"looked up as {root}/<sample_id>, unverified (no manifest to check against)")
    out = []
    for sample_id, score in zip(members["sample_id"], members[column], strict=True):
        flagged = float(
            (len(nonmember) - np.searchsorted(nonmember, score)) / max(len(nonmember), 1)
        )
        entry = by_id.get(sample_id)
        path = entry[0] if entry else (_inside(root, sample_id) if root else None)
        if path is None or not Path(path).is_file():
            status = f"image not found ({path or sample_id})"
            out.append(Exposed(sample_id, float(score), flagged, None, status))
            continue
        try:
            uri, pixels = _thumbnail(Path(path))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            out.append(Exposed(sample_id, float(score), flagged, None, f"not shown: {err}"))
            continue
        if entry and sha256_array(pixels) != entry[1]:
            # The manifest holds the reader's content digest: for paired images (pix2pix)
            # that of the file's pixels; readers that also hash their label map or crop
            # (segmentation, faces, boxes) cannot be checked from the file alone.
            status = (
                "not shown: its decoded pixels do not hash to the split manifest's digest "
                "(changed since the split, or a reader whose digest also covers a label map "
                "or crop, which the report cannot check)"
            )
            out.append(Exposed(sample_id, float(score), flagged, None, status))
            continue
        status = "verified" if entry else "unverified"
        out.append(Exposed(sample_id, float(score), flagged, uri, status))
    if out and all(e.image is None for e in out):
        notes.append("no image of these samples could be shown (see each sample's status)")
    return out, notes
