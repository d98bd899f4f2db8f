"""Embedded license-plate data: rendered plates pasted with a perspective onto photos, in
the YOLO text layout.

No download: each plate is rendered with random characters (Pillow's built-in scalable
font on a plate-coloured rectangle with a border, in the colour schemes of real plates),
then warped onto a random crop of a scikit-image sample photo with a random rotation and
perspective (its four corners moved independently). :func:`build_plates_on_scenes` writes
the result once as::

    <root>/images/{train,val}/<k>_<background>_<i>.jpg
    <root>/labels/{train,val}/<same>.txt     class cx cy w h (class 0, fractions)
    <root>/corners/{train,val}/<same>.txt    x y of the four corners, clockwise from top-left
    <root>/data.yaml                         the Ultralytics dataset file (names: {0: plate})

so :class:`~miabench.data.yolo_boxes.YoloBoxesDataset` reads it exactly as it reads an
exported plate dataset (and Ultralytics can read it too). The box is the warped plate's
bounding box, so it is tight around the corners.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms import InterpolationMode

from miabench.data.embedded.build import build_once
from miabench.data.embedded.scenes import sample_photos, xywh_iou
from miabench.utils.io import atomic_write_text

#: Bumped when the rendering changes, so an old folder is not mistaken for a new build.
RENDER_VERSION = 1
#: scikit-image sample photos without text or plates in them (``page`` and ``text`` hold
#: characters that would be unlabelled plate-like text; ``cat`` is ``chelsea`` again).
BACKGROUNDS: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "moon",
    "retina",
    "rocket",
)
#: plate characters: letters and digits without I and O (as on Chinese plates, read as 1, 0)
CHARACTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
#: (plate, characters) RGB: blue/white, yellow/black, white/black, green/black
SCHEMES = (
    ((20, 60, 170), (245, 245, 245)),
    ((245, 195, 20), (15, 15, 15)),
    ((240, 240, 240), (15, 15, 15)),
    ((90, 190, 110), (15, 15, 15)),
)
#: rendered plate in pixels (440 x 140 mm, the Chinese standard, at 1/4 scale)
PLATE_WIDTH, PLATE_HEIGHT = 110, 35


def render_plate(text: str, scheme: int) -> Image.Image:
    """One plate, ``PLATE_WIDTH x PLATE_HEIGHT``: a border and the centred characters
    (Pillow's built-in scalable font, Pillow >= 10.1)."""
    background, ink = SCHEMES[scheme]
    plate = Image.new("RGB", (PLATE_WIDTH, PLATE_HEIGHT), background)
    draw = ImageDraw.Draw(plate)
    draw.rectangle([1, 1, PLATE_WIDTH - 2, PLATE_HEIGHT - 2], outline=ink, width=2)
    size = PLATE_HEIGHT - 10
    # wide characters (W, M) are narrowed by a smaller font so all seven stay on the plate
    width = ImageFont.load_default(size=size).getlength(text)
    font = ImageFont.load_default(size=min(size, int(size * (PLATE_WIDTH - 10) / width)))
    draw.text((PLATE_WIDTH / 2, PLATE_HEIGHT / 2), text, fill=ink, font=font, anchor="mm")
    return plate


def _corners(rng: np.random.Generator, width: float, rotation: float, jitter: float) -> np.ndarray:
    """(4, 2) corners of a ``width``-wide plate centred on 0: rotated by up to ``rotation``
    degrees, each corner then moved by up to ``jitter`` x the plate's height (perspective)."""
    half = np.array([width, width * PLATE_HEIGHT / PLATE_WIDTH]) / 2
    rect = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half  # clockwise from top-left
    angle = np.deg2rad(rng.uniform(-rotation, rotation))
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return rect @ turn.T + rng.uniform(-jitter, jitter, (4, 2)) * 2 * half[1]


def compose_image(
    background: np.ndarray,
    rng: np.random.Generator,
    image_size: int,
    n_plates: tuple[int, int],
    plate_width: tuple[int, int],
    rotation: float,
    jitter: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One composite: a random crop of ``background`` with warped plates on it.

    Returns:
        ``(image uint8 (S, S, 3), boxes float (N, 4) x1 y1 x2 y2, corners float (N, 4, 2))``
        in pixels; plates never overlap (bounding boxes disjoint).
    """
    height, width = background.shape[:2]
    side = int(rng.integers(min(height, width) // 3, min(height, width) + 1))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(background[top : top + side, left : left + side])
    canvas = torch.from_numpy(np.array(crop.resize((image_size, image_size), Image.BILINEAR)))
    canvas = canvas.permute(2, 0, 1).float()
    boxes: list[np.ndarray] = []
    corners: list[np.ndarray] = []
    for _ in range(int(rng.integers(n_plates[0], n_plates[1] + 1))):
        for _attempt in range(20):
            plate_w = int(rng.integers(plate_width[0], plate_width[1] + 1))
            size = (plate_w, max(1, round(plate_w * PLATE_HEIGHT / PLATE_WIDTH)))
            shape = _corners(rng, plate_w, rotation, jitter)
            rect = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) * size
            both = np.concatenate([shape, rect])
            low, high = -both.min(0) + 1, image_size - both.max(0) - 1
            if (high < low).any():
                continue  # too large for the image at this angle
            centre = rng.uniform(low, high)
            quad = shape + centre
            box = np.concatenate([np.floor(quad.min(0)), np.ceil(quad.max(0))])
            xywh = np.concatenate([box[:2], box[2:] - box[:2]])
            others = np.asarray([[*b[:2], *(b[2:] - b[:2])] for b in boxes]).reshape(-1, 4)
            if (xywh_iou(xywh, others) <= 0).all():
                break
        else:
            continue  # no free spot: fewer plates in this image
        text = "".join(rng.choice(list(CHARACTERS), 7))
        plate = render_plate(text, int(rng.integers(len(SCHEMES))))
        # The plate is pasted upright at its place, then torchvision's perspective transform
        # moves its corners onto the warped quadrilateral (alpha carried along for blending).
        # Only the patch around both is warped: the rest of the image does not change.
        (px0, py0), (px1, py1) = (
            np.floor(both.min(0) + centre).clip(0, image_size).astype(int),
            np.ceil(both.max(0) + centre + 1).clip(0, image_size).astype(int),
        )
        layer = torch.zeros(4, py1 - py0, px1 - px0)
        x0, y0 = (int(round(v)) for v in rect[0] + centre - (px0, py0))
        upright = torch.from_numpy(np.array(plate.resize(size, Image.BICUBIC))).permute(2, 0, 1)
        layer[:3, y0 : y0 + size[1], x0 : x0 + size[0]] = upright.float()
        layer[3, y0 : y0 + size[1], x0 : x0 + size[0]] = 1.0
        start = [[x0, y0], [x0 + size[0], y0], [x0 + size[0], y0 + size[1]], [x0, y0 + size[1]]]
        end = (quad - (px0, py0)).tolist()
        warped = F.perspective(
            layer, start, end, interpolation=InterpolationMode.BILINEAR, fill=0.0
        )
        # bilinear sampling of zeros outside the plate premultiplies colour by alpha
        patch = canvas[:, py0:py1, px0:px1]
        canvas[:, py0:py1, px0:px1] = patch * (1 - warped[3:]) + warped[:3]
        boxes.append(box)
        corners.append(quad)
    image = canvas.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return (
        image,
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2),
    )


def _lines(boxes: np.ndarray, corners: np.ndarray, size: int) -> tuple[str, str]:
    """The YOLO label text and the corners text of one image."""
    labels = [
        f"0 {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} "
        f"{(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}\n"
        for x1, y1, x2, y2 in boxes
    ]
    quads = [" ".join(f"{v / size:.6f}" for v in quad.ravel()) + "\n" for quad in corners]
    return "".join(labels), "".join(quads)


def build_plates_on_scenes(
    out_root: str | os.PathLike,
    n_train: int,
    n_val: int,
    image_size: int = 128,
    n_plates: Sequence[int] = (1, 2),
    plate_width: Sequence[int] = (32, 64),
    rotation: float = 15.0,
    jitter: float = 0.2,
    backgrounds: Sequence[str] = BACKGROUNDS,
    seed: int = 0,
) -> Path:
    """Build the plates-on-scenes dataset once, in the YOLO text layout.

    Image ``i`` of a phase uses background ``i mod len(backgrounds)``. The folder is built
    beside ``out_root`` and moved into place with a completion marker, so it is either
    complete or absent; a rebuild with the same parameters is a no-op.

    Args:
        out_root: dataset folder to create.
        n_train: number of ``train`` images.
        n_val: number of ``val`` images.
        image_size: side of the square images.
        n_plates: inclusive range of plates per image.
        plate_width: inclusive range of a plate's width in pixels before warping (a plate
            that does not fit the image at its angle is drawn again, up to 20 times, then
            left out).
        rotation: largest rotation of a plate, in degrees.
        jitter: largest move of each corner, as a fraction of the plate's height.
        backgrounds: ``skimage.data`` sample photos to crop backgrounds from.
        seed: seed of everything random.

    Returns:
        ``out_root``.

    Raises:
        ValueError: ``out_root`` holds a build with other parameters, or bad sizes.
        FileExistsError: ``out_root`` holds something else.
    """
    out_root = Path(out_root)
    n_plates, plate_width = tuple(int(v) for v in n_plates), tuple(int(v) for v in plate_width)
    if not (0 <= n_plates[0] <= n_plates[1]) or not (
        8 <= plate_width[0] <= plate_width[1] <= image_size
    ):
        raise ValueError(
            f"need 0 <= n_plates[0] <= n_plates[1] and 8 <= plate_width[0] <= plate_width[1] <= "
            f"image_size, got n_plates={n_plates}, plate_width={plate_width}, "
            f"image_size={image_size}"
        )
    params = {
        "n_train": n_train,
        "n_val": n_val,
        "image_size": image_size,
        "n_plates": list(n_plates),
        "plate_width": list(plate_width),
        "rotation": float(rotation),
        "jitter": float(jitter),
        "backgrounds": list(backgrounds),
        "seed": seed,
        "render_version": RENDER_VERSION,
    }

    def write(tmp: Path) -> dict[str, Any]:
        photos = sample_photos(backgrounds)
        rng = np.random.default_rng(seed)
        counts: dict[str, int] = {}
        for phase, n in (("train", n_train), ("val", n_val)):
            for folder in ("images", "labels", "corners"):
                (tmp / folder / phase).mkdir(parents=True)
            n_boxes = 0
            for i in range(n):
                k = i % len(photos)
                image, boxes, corners = compose_image(
                    photos[k], rng, image_size, n_plates, plate_width, rotation, jitter
                )
                stem = f"{k}_{backgrounds[k]}_{phase}_{i:05d}"
                Image.fromarray(image).save(tmp / "images" / phase / f"{stem}.jpg", quality=95)
                labels, quads = _lines(boxes, corners, image_size)
                (tmp / "labels" / phase / f"{stem}.txt").write_text(labels, encoding="utf-8")
                (tmp / "corners" / phase / f"{stem}.txt").write_text(quads, encoding="utf-8")
                n_boxes += len(boxes)
            counts[phase] = n
            counts[f"{phase}_plates"] = n_boxes
        atomic_write_text(
            tmp / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: plate\n"
        )
        return {"counts": counts}

    return build_once(out_root, params, "plates-on-scenes", write)
