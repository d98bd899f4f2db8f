"""Embedded face-area segmentation: the LFW face composites with a face-area mask each.

The images are the faces-on-scenes composites (:func:`~miabench.data.embedded.
face_composites.compose_image`: scikit-image's LFW face crops pasted onto crops of its
sample photos; with the same parameters and seed, the same rendered pixels as
``data=faces_on_scenes``). Each composite gets a mask of its face area: the ellipse
inscribed in each pasted face's box, with semi-axes :data:`ELLIPSE_AXES` of the box's
width and height. The LFW crops are tight (the face fills the box; the corners hold hair,
neck and background), so the ellipse is the skin-like area an anonymizer must cover,
not the whole box. A face pasted over an earlier one clears that one's mask inside its box
(it hides it), so the mask always shows what the image shows.

Written once (atomically, with a completion marker) in the mask-folder layout:
``images/{train,val}/<name>.png`` and ``masks/{train,val}/<name>.png`` (0 background,
1 face), read by :class:`~miabench.data.face_area.MaskFolderDataset`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from miabench.data.embedded.build import completed_build
from miabench.data.embedded.composites import Renderer, _build
from miabench.data.embedded.face_composites import (
    BACKGROUNDS,
    _faces,
    compose_image,
    face_ranges,
)
from miabench.data.embedded.scenes import sample_photos

#: Bumped when the rendering changes, so an old folder is not mistaken for a new build.
RENDER_VERSION = 1
#: the face ellipse's semi-axes as fractions of the pasted box's width and height
ELLIPSE_AXES = (0.42, 0.5)
WHAT = "face-area-on-scenes"


def face_area_mask(
    boxes: np.ndarray, size: int, axes: Sequence[float] = ELLIPSE_AXES
) -> np.ndarray:
    """The face-area mask of a composite: the ellipse inscribed in each box, in paste order.

    Args:
        boxes: (N, 4) int ``x, y, w, h`` in the order the faces were pasted.
        size: side of the square image.
        axes: semi-axes as fractions of each box's width and height.

    Returns:
        uint8 (size, size): 1 on the visible face areas, 0 elsewhere.
    """
    mask = np.zeros((size, size), dtype=np.uint8)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    for x, y, w, h in boxes:
        mask[y : y + h, x : x + w] = 0  # this paste hides what was below it
        inside = ((xs - (x + w / 2)) / (axes[0] * w)) ** 2 + (
            (ys - (y + h / 2)) / (axes[1] * h)
        ) ** 2 <= 1.0
        mask[inside] = 1
    return mask


def build_face_area_on_scenes(
    out_root: str | os.PathLike,
    n_train: int,
    n_val: int,
    image_size: int = 128,
    n_faces: Sequence[int] = (1, 3),
    face_size: Sequence[int] = (20, 48),
    backgrounds: Sequence[str] = BACKGROUNDS,
    seed: int = 0,
) -> Path:
    """Build the face-area set once, in the mask-folder layout.

    Args:
        out_root: dataset folder to create.
        n_train: images in ``train``.
        n_val: images in ``val``.
        image_size: side of the square images.
        n_faces: inclusive range of faces per image.
        face_size: inclusive range of a face's side in pixels.
        backgrounds: ``skimage.data`` sample photos to crop backgrounds from.
        seed: seed of everything random.

    Returns:
        ``out_root``.

    Raises:
        ValueError: bad sizes, or ``out_root`` holds a build with other parameters.
        FileExistsError: ``out_root`` holds something else.
    """
    out_root = Path(out_root)
    n_faces, face_size = face_ranges(n_faces, face_size, image_size)
    params = {
        "n_train": n_train,
        "n_val": n_val,
        "image_size": image_size,
        "n_faces": list(n_faces),
        "face_size": list(face_size),
        "backgrounds": list(backgrounds),
        "ellipse_axes": list(ELLIPSE_AXES),
        "seed": seed,
        "render_version": RENDER_VERSION,
    }
    if completed_build(out_root, params, WHAT):
        return out_root
    photos, faces = sample_photos(backgrounds), _faces()

    def renderer() -> Renderer:
        # image i of a phase uses background i mod len(backgrounds), as faces_on_scenes does
        counter = itertools.count()

        def render(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            photo = photos[next(counter) % len(photos)]
            image, boxes = compose_image(photo, faces, rng, image_size, n_faces, face_size)
            return image, face_area_mask(boxes, image_size)

        return render

    splits = [
        (name, n, renderer(), Path("images") / name, Path("masks") / name, f"{name}_")
        for name, n in (("train", n_train), ("val", n_val))
    ]
    return _build(out_root, params, WHAT, splits, seed)
