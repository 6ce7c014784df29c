"""The mask cut with hysteresis, shared by training (which chooses its two levels), the service
and eval: a region is a connected part of the map at or above the extent level that reaches the
pixel threshold somewhere (inspection/postprocess.py says why)."""

from __future__ import annotations

import cv2
import numpy as np


def cut_mask(anomaly_map: np.ndarray, pixel_threshold: float, extent: float | None = None) -> np.ndarray:
    """uint8 0/1: the map at or above extent, where connected to a pixel at or above pixel_threshold.
    extent None (or not below pixel_threshold): the plain cut at pixel_threshold."""
    seeds = anomaly_map >= pixel_threshold
    if extent is None or extent >= pixel_threshold or not seeds.any():
        return seeds.astype(np.uint8)
    _, labels = cv2.connectedComponents((anomaly_map >= extent).astype(np.uint8), connectivity=8)
    keep = np.zeros(labels.max() + 1, np.uint8)
    keep[np.unique(labels[seeds])] = 1  # every seed lies inside a component (extent < pixel_threshold)
    keep[0] = 0
    return keep[labels]
