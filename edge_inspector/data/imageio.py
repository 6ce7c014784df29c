"""Reading images and masks the way the benchmark protocol prescribes."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


def read_image(path: str | Path, size: int | None = None) -> np.ndarray | None:
    """Read an image as 3-channel BGR uint8 (grayscale replicated), optionally resized to size x size.

    Returns None (with a warning naming the file) where the file is missing, empty or corrupt,
    so that one bad file never stops a run.
    """
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        log.warning("skipping unreadable image %s", path)
        return None
    if size is not None and image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


def read_mask(path: str | Path | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Read a mask as bool (> 127), resized with nearest neighbour to shape (h, w).

    A missing path means an all-normal image (zeros). Returns None for an unreadable mask file.
    """
    h, w = shape
    if path is None:
        return np.zeros((h, w), dtype=bool)
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data is not None and data.size else None
    if mask is None:
        log.warning("skipping unreadable mask %s", path)
        return None
    if mask.shape != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return mask > 127


def to_tensor_layout(images_bgr: list[np.ndarray]) -> np.ndarray:
    """Stack BGR uint8 images into an RGB float32 NCHW array in [0, 1]."""
    view = np.stack(images_bgr)[..., ::-1].transpose(0, 3, 1, 2)
    out = np.empty(view.shape, np.float32)
    # one pass: channel swap, layout change and scaling in the same copy, not three
    np.multiply(view, np.float32(1 / 255), out=out)
    return out


def shrink(image: np.ndarray, size: int) -> np.ndarray:
    """Area-filtered resize to size x size at the cost of an integer-factor one.

    OpenCV's area filter is fast only for integer factors: a bilinear step to the next multiple of
    size, then an exact k x k box average (about half the time of cv2.INTER_AREA for 1 MP -> 256,
    within one gray level of it).
    """
    h, w = image.shape[:2]
    if h < size or w < size:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    kx, ky = -(-w // size), -(-h // size)
    if (w, h) != (kx * size, ky * size):
        image = cv2.resize(image, (kx * size, ky * size), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def from_tensor_layout(batch: np.ndarray) -> np.ndarray:
    """The inverse of to_tensor_layout: RGB float32 NCHW in [0, 1] -> BGR uint8 NHWC."""
    return np.ascontiguousarray((batch.transpose(0, 2, 3, 1)[..., ::-1] * 255).round().astype(np.uint8))
