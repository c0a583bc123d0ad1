"""Image and mask I/O. Pixels stay uint8 here; nothing in this module makes float copies.

OpenCV decodes (it is the fastest PNG/JPEG decoder available from PyPI and releases the GIL);
Pillow reads only headers (image sizes without decoding). Every failure raises ``DatasetError``
naming the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from nerflite.data.scene import DatasetError

cv2.setNumThreads(1)  # decoding is parallelised across worker processes, not inside OpenCV


def read_bytes(path: str | Path) -> bytes:
    """The encoded file, as it is on disk."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, "image file is missing") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read image file ({e.strerror or e})") from None


def _looks_truncated(data: bytes) -> bool:
    if data[:2] == b"\xff\xd8":  # JPEG: must end with the EOI marker (allow trailing padding)
        return b"\xff\xd9" not in data[-1024:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":  # PNG: must contain the IEND chunk
        return b"IEND" not in data[-64:]
    return False


def decode_image(data: bytes, path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode encoded bytes to uint8 [H, W, 3] RGB or [H, W, 4] RGBA (alpha kept, not composited).

    ``size = (width, height)`` resizes (area filter) when the decoded image differs. ``path`` is
    only used in error messages.
    """
    if len(data) == 0:
        raise DatasetError(path, "image file is empty")
    if _looks_truncated(data):
        raise DatasetError(path, "image file is truncated")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(path, "cannot decode image (corrupt or not an image)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DatasetError(path, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    else:
        raise DatasetError(path, f"unsupported channel count {img.shape[2]}")
    if size is not None and (img.shape[1], img.shape[0]) != tuple(size):
        img = cv2.resize(img, tuple(int(s) for s in size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read and decode one image file: uint8 [H, W, 3|4]."""
    return decode_image(read_bytes(path), path, size)


def decode_mask(data: bytes, path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a mask image to bool [H, W]: true where the first channel is above 127."""
    img = decode_image(data, path, size)
    return img[..., 0] > 127


def read_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    return decode_mask(read_bytes(path), path, size)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise DatasetError(path, "image file is missing") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(path, f"cannot read image header ({e})") from None
