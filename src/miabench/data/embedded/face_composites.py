"""Embedded face-detection data: LFW face crops pasted onto photos, in the WIDER FACE layout.

scikit-image ships, offline, ``lfw_subset`` (200 grayscale 25x25 crops from Labeled Faces
in the Wild: the first 100 are faces, the last 100 random non-face patches) and a few
sample photos. :func:`build_faces_on_scenes` pastes the faces at random positions and
scales onto random crops of photos without people in them and writes the result as
``WIDER_{train,val}/images/<event>/*.jpg`` with ``wider_face_split/*_bbx_gt.txt``, so
:class:`~miabench.data.wider_face.WiderFaceDataset` reads it exactly as it reads WIDER FACE.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage import data as skdata
from skimage.color import gray2rgb

from miabench.data.embedded.build import build_once
from miabench.data.embedded.scenes import sample_photos, xywh_iou
from miabench.data.wider_face import annotation_file, image_folder
from miabench.utils.io import atomic_write_text

#: Bumped when the rendering changes, so an old folder is not mistaken for a new build.
RENDER_VERSION = 1
#: ``lfw_subset()`` holds 100 faces followed by 100 non-faces.
N_LFW_FACES = 100
#: scikit-image sample photos without human faces (``astronaut`` and ``camera`` have one,
#: which would be an unlabelled face). Each is a ``skimage.data`` function.
BACKGROUNDS: tuple[str, ...] = (
    "brick",
    "grass",
    "gravel",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "coins",
    "moon",
    "page",
    "text",
    "retina",
)


def _faces() -> np.ndarray:
    """The 100 LFW faces of ``lfw_subset`` as uint8 RGB (100, 25, 25, 3)."""
    faces = skdata.lfw_subset()[:N_LFW_FACES]
    return (gray2rgb(faces) * 255).round().astype(np.uint8)


def compose_image(
    background: np.ndarray,
    faces: np.ndarray,
    rng: np.random.Generator,
    image_size: int,
    n_faces: tuple[int, int],
    face_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """One composite: a random crop of ``background`` with faces pasted on it.

    Args:
        background: RGB uint8 photo.
        faces: RGB uint8 face crops (K, h, w, 3).
        rng: random generator (crop, faces, positions, sizes).
        image_size: side of the square composite.
        n_faces: inclusive range of the number of faces.
        face_size: inclusive range of a pasted face's side, in pixels.

    Returns:
        ``(image uint8 (S, S, 3), boxes int (N, 4) x, y, w, h)``; faces overlap each other by
        at most 0.1 IoU (a face hidden behind another would be an unfair label).
    """
    height, width = background.shape[:2]
    side = int(rng.integers(min(height, width) // 3, min(height, width) + 1))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(background[top : top + side, left : left + side])
    canvas = np.array(crop.resize((image_size, image_size), Image.BILINEAR))
    boxes: list[list[int]] = []
    for _ in range(int(rng.integers(n_faces[0], n_faces[1] + 1))):
        for _attempt in range(20):
            size = int(rng.integers(face_size[0], face_size[1] + 1))
            x, y = (int(v) for v in rng.integers(0, image_size - size + 1, size=2))
            box = np.array([x, y, size, size])
            if (xywh_iou(box, np.asarray(boxes).reshape(-1, 4)) <= 0.1).all():
                break
        else:
            continue  # no free spot: fewer faces in this image
        face = faces[int(rng.integers(len(faces)))]
        pasted = np.asarray(Image.fromarray(face).resize((size, size), Image.BICUBIC))
        canvas[y : y + size, x : x + size] = pasted
        boxes.append([x, y, size, size])
    return canvas, np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def face_ranges(
    n_faces: Sequence[int], face_size: Sequence[int], image_size: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(n_faces, face_size)`` as int pairs, checked against each other and the image.

    Raises:
        ValueError: an empty or reversed range, or a face larger than the image.
    """
    n_faces, face_size = tuple(int(v) for v in n_faces), tuple(int(v) for v in face_size)
    if not (0 <= n_faces[0] <= n_faces[1]) or not (1 <= face_size[0] <= face_size[1] <= image_size):
        raise ValueError(
            f"need 0 <= n_faces[0] <= n_faces[1] and 1 <= face_size[0] <= face_size[1] <= "
            f"image_size, got n_faces={n_faces}, face_size={face_size}, image_size={image_size}"
        )
    return n_faces, face_size


def build_faces_on_scenes(
    out_root: str | os.PathLike,
    n_train: int,
    n_val: int,
    image_size: int = 128,
    n_faces: Sequence[int] = (1, 3),
    face_size: Sequence[int] = (20, 48),
    backgrounds: Sequence[str] = BACKGROUNDS,
    seed: int = 0,
) -> Path:
    """Build the faces-on-scenes dataset once, in the WIDER FACE layout.

    Image ``i`` of a phase uses background ``i mod len(backgrounds)``, stored under the event
    folder ``<k>--<background>``. The folder is built beside ``out_root`` and moved into
    place with a completion marker, so it is either complete or absent; a rebuild with the
    same parameters is a no-op.

    Args:
        out_root: dataset folder to create.
        n_train: number of ``WIDER_train`` images.
        n_val: number of ``WIDER_val`` images.
        image_size: side of the square images.
        n_faces: inclusive range of faces per image.
        face_size: inclusive range of a face's side in pixels (the crops are 25x25).
        backgrounds: ``skimage.data`` sample photos to crop backgrounds from.
        seed: seed of everything random.

    Returns:
        ``out_root``.

    Raises:
        ValueError: ``out_root`` holds a build with other parameters, or bad sizes.
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
        "seed": seed,
        "render_version": RENDER_VERSION,
    }

    def write(tmp: Path) -> dict[str, Any]:
        photos, faces = sample_photos(backgrounds), _faces()
        rng = np.random.default_rng(seed)
        counts: dict[str, int] = {}
        for phase, n in (("train", n_train), ("val", n_val)):
            lines: list[str] = []
            n_boxes = 0
            for i in range(n):
                k = i % len(photos)
                image, boxes = compose_image(photos[k], faces, rng, image_size, n_faces, face_size)
                name = f"{k}--{backgrounds[k]}/{k}_{backgrounds[k]}_{phase}_{i:05d}.jpg"
                path = image_folder(tmp, phase) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path, quality=95)
                lines += [name, str(len(boxes))]
                # blur expression illumination invalid occlusion pose: all 0 (clear faces)
                lines += [f"{x} {y} {w} {h} 0 0 0 0 0 0 " for x, y, w, h in boxes]
                if len(boxes) == 0:
                    lines.append("0 0 0 0 0 0 0 0 0 0 ")  # WIDER's placeholder for no face
                n_boxes += len(boxes)
            atomic_write_text(annotation_file(tmp, phase), "\n".join(lines) + "\n")
            counts[phase] = n
            counts[f"{phase}_faces"] = n_boxes
        return {"counts": counts}

    return build_once(out_root, params, "faces-on-scenes", write)
