"""Checks on each collected frame: focus, exposure clipping, motion blur, near-duplicates.

Exposure is judged absolutely (clipped pixels); focus and motion blur relative to the batch's
median (what is sharp depends on the product and the lens, but most frames of a set-up station
are good): a frame far below the median sharpness is out of focus, one whose sharpness is
lopsided between x and y (relative to the median) is smeared by motion. A near-duplicate is a
frame whose thumbnail barely differs from one already kept (a stopped line shows the same part).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CLIP_SHARE = 0.05  # more than this share of pixels at 0 or 255 is clipped exposure
FOCUS_RATIO = 0.35  # sharpness below this share of the median: out of focus
MOTION_LOG_RATIO = np.log(2.5)  # x/y sharpness lopsided by this factor beyond the median's: motion blur
DUPLICATE_MAD = 0.5  # mean absolute thumbnail difference (grey levels) below which frames are the same


@dataclass
class Measures:
    sharpness: float
    anisotropy: float  # log of x over y gradient energy
    bright: float
    dark: float
    thumb: np.ndarray


def measure(image: np.ndarray) -> Measures:
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1)
    ex, ey = float((gx * gx).mean()) + 1e-6, float((gy * gy).mean()) + 1e-6
    lap = cv2.Laplacian(small, cv2.CV_32F)
    return Measures(float(lap.var()), float(np.log(ex / ey)), float((grey >= 250).mean()), float((grey <= 5).mean()),
                    cv2.resize(small, (32, 32), interpolation=cv2.INTER_AREA))


def screen(images: list[np.ndarray]) -> list[str | None]:
    """For each image: None to keep it, else the reason it is rejected."""
    ms = [measure(im) for im in images]
    sharp_median = float(np.median([m.sharpness for m in ms])) if ms else 0.0
    aniso_median = float(np.median([m.anisotropy for m in ms])) if ms else 0.0
    kept: list[np.ndarray] = []
    reasons: list[str | None] = []
    for m in ms:
        if m.bright > CLIP_SHARE:
            reason = f"over-exposed: {m.bright:.0%} of pixels clipped white"
        elif m.dark > CLIP_SHARE:
            reason = f"under-exposed: {m.dark:.0%} of pixels clipped black"
        elif abs(m.anisotropy - aniso_median) > MOTION_LOG_RATIO:
            reason = f"motion blur: sharpness {np.exp(abs(m.anisotropy - aniso_median)):.1f}x lopsided"
        elif m.sharpness < FOCUS_RATIO * sharp_median:
            reason = f"out of focus: sharpness {m.sharpness:.0f} against a median of {sharp_median:.0f}"
        elif any(float(np.abs(m.thumb - k).mean()) < DUPLICATE_MAD for k in kept):
            reason = "near-duplicate of a frame already kept"
        else:
            reason = None
            kept.append(m.thumb)
        reasons.append(reason)
    return reasons
