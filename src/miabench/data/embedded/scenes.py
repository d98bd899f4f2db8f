"""What the scene composites share: scikit-image's offline sample photos as backgrounds and
the overlap of pasted boxes (faces on scenes, face areas, plates on scenes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage import data as skdata
from skimage.color import gray2rgb


def sample_photos(names: Sequence[str]) -> list[np.ndarray]:
    """RGB uint8 arrays of the named scikit-image sample photos (shipped with the package).

    Raises:
        ValueError: ``skimage.data`` has no such sample.
        RuntimeError: the sample is not shipped (scikit-image would fetch it).
    """
    images = []
    for name in names:
        loader = getattr(skdata, name, None)
        if loader is None:
            raise ValueError(f"skimage.data has no sample image {name!r} (backgrounds)")
        try:
            image = np.asarray(loader())
        except Exception as err:  # pooch raises various errors when a file must be fetched
            raise RuntimeError(
                f"skimage.data.{name}() is not available offline ({type(err).__name__}: {err}); "
                "choose backgrounds shipped with scikit-image"
            ) from err
        if image.ndim == 2:
            image = gray2rgb(image)
        images.append(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    return images


def xywh_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xywh box with (N, 4) xywh boxes (numpy, as the renderers place boxes;
    torchvision's ``box_iou`` takes xyxy tensors)."""
    if len(others) == 0:
        return np.zeros(0)
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    y2 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (box[2] * box[3] + others[:, 2] * others[:, 3] - inter)
