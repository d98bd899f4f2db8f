"""Uploaded files → decoded pixels, refusing anything that is not a plain PNG, JPEG or WebP.

A web service takes files from strangers, so every upload is hostile until decoded: its first
bytes must be one of the three formats' signatures (a text or SVG file named ``.png`` is
refused before Pillow sees it), Pillow may only open those three formats, the pixel count is
capped before decoding (a 50 000 x 50 000 PNG header is refused without allocating its
pixels), Pillow's decompression-bomb *warning* is an error too, and the whole file is decoded
(a truncated file fails here, not later). Nothing is written to disk and the client's file
name is only ever echoed back, never used as a path.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from miabench.data.aligned import to_rgb

#: Pillow format name for each accepted signature (the first bytes of the file).
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


class UploadError(ValueError):
    """An upload the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """One received file: the client's name (echoed, never used as a path) and its bytes."""

    filename: str
    data: bytes


def sniff_format(data: bytes) -> str | None:
    """The accepted format the file's first bytes announce, or None."""
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    # RIFF....WEBP: the size field sits between the two tags
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_image(upload: Upload, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image to RGB uint8 ``[H, W, 3]`` (by the datasets' conversions).

    Args:
        upload: the received file.
        max_pixels: the largest width x height accepted (checked from the header, before
            the pixels are decoded).

    Raises:
        UploadError: 422 for an empty file, a file that is not PNG/JPEG/WebP by content,
            a truncated or corrupt image, or one with more than ``max_pixels`` pixels; the
            message names the file.
    """
    name = upload.filename or "<unnamed>"
    if not upload.data:
        raise UploadError(f"{name}: empty file (0 bytes)")
    kind = sniff_format(upload.data)
    if kind is None:
        raise UploadError(
            f"{name}: not a PNG, JPEG or WebP image by its content (only those are accepted; "
            "the file name's extension is not trusted)"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) between MAX_IMAGE_PIXELS and twice
            # that, and only raises above; here the warning is an error as well.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(upload.data), formats=[kind]) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UploadError(
                        f"{name}: {width}x{height} pixels exceed the limit of {max_pixels} "
                        "(serve.max_pixels)"
                    )
                image.load()  # the full decode: a truncated file fails here
                return to_rgb(image, name)
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UploadError(
            f"{name}: its pixels exceed the limit of {max_pixels} (serve.max_pixels; "
            f"Pillow's decompression-bomb guard: {err})"
        ) from err
    except (OSError, SyntaxError, ValueError, Warning) as err:
        raise UploadError(f"{name}: unreadable or corrupt {kind} image ({err})") from err


def configure_pillow(max_pixels: int) -> None:
    """Set Pillow's process-wide decompression-bomb guard to ``max_pixels`` (deliberately,
    instead of its default of about 89 M pixels, far more than any model here reads)."""
    Image.MAX_IMAGE_PIXELS = int(max_pixels)
