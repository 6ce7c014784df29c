"""The mask cut with hysteresis, shared by training (which chooses its two levels), the service
and eval: a region is a connected part of the map at or above the extent level that reaches the
pixel threshold somewhere (inspection/postprocess.py says why)."""

from __future__ import annotations

import cv2
import numpy as np


def cut_levels(threshold_cfg, model) -> tuple[float, float | None]:
    """(pixel threshold, extent): the station file's (`threshold.pixel_threshold`, `.pixel_extent`)
    where it sets them, else the model's own, chosen on training data."""
    level, extent = threshold_cfg.pixel_threshold, threshold_cfg.pixel_extent
    return (float(level) if level is not None else model.pixel_threshold,
            float(extent) if extent is not None else model.pixel_extent)


def components(anomaly_map: np.ndarray, extent: float) -> np.ndarray:
    """The connected parts (8-connected labels, 0 the background) of the map at or above extent."""
    return cv2.connectedComponents((anomaly_map >= extent).astype(np.uint8), connectivity=8)[1]


def seeded(labels: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """uint8 0/1: the labelled parts that hold a seed (seeds lie within the labelled parts)."""
    keep = np.zeros(labels.max() + 1, np.uint8)
    keep[np.unique(labels[seeds])] = 1
    keep[0] = 0
    return keep[labels]


def cut_mask(anomaly_map: np.ndarray, pixel_threshold: float, extent: float | None = None) -> np.ndarray:
    """uint8 0/1: the map at or above extent, where connected to a pixel at or above pixel_threshold.
    extent None (or not below pixel_threshold): the plain cut at pixel_threshold."""
    seeds = anomaly_map >= pixel_threshold
    if extent is None or extent >= pixel_threshold or not seeds.any():
        return seeds.astype(np.uint8)
    return seeded(components(anomaly_map, extent), seeds)
