"""From a camera frame of any size to an anomaly map at frame resolution and an image score.

resize: the region of interest is resized to the model input and its map resized back.
tiles: the region is cut into overlapping tiles of tile_size frame pixels, each resized to the
model input (no resize when tile_size is the input size), inferred in batches, and stitched back
by averaging where tiles overlap; the image score is the largest tile score. A defect of a few
pixels on a 20-megapixel frame keeps its pixels instead of being averaged away by a 100x resize.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge_inspector.data.imageio import shrink, to_tensor_layout
from edge_inspector.errors import UserError


@dataclass
class Inspection:
    """The anomaly map of the region of interest, at the resolution it was computed at (the model
    input for resize, the frame's for tiles): postprocessing works there, and only a mask that
    leaves the process is brought to frame resolution (16x less work on a 1-megapixel frame)."""

    anomaly_map: np.ndarray  # (h, w) float32 over the region of interest
    score: float
    tiles: int
    frame_shape: tuple[int, int]  # (H, W) of the frame
    roi: tuple[int, int, int, int]  # x, y, width, height in frame pixels
    tile_scores: np.ndarray | None = None  # tiles: each tile's score (the frame's is their maximum)

    @property
    def scale(self) -> tuple[float, float]:
        """Frame pixels per map pixel, (x, y)."""
        return self.roi[2] / self.anomaly_map.shape[1], self.roi[3] / self.anomaly_map.shape[0]

    def to_frame(self, image: np.ndarray, nearest: bool = True) -> np.ndarray:
        """A map-resolution array (map or mask) placed at frame resolution; 0 outside the region."""
        x, y, w, h = self.roi
        out = np.zeros(self.frame_shape, image.dtype)
        if image.shape != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)
        out[y : y + h, x : x + w] = image
        return out

    def frame_map(self) -> np.ndarray:
        return self.to_frame(self.anomaly_map, nearest=False)


def as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # images (B, 3, S, S) -> (maps, scores)


def numpy_predict(model) -> Predict:
    """A Predict for a torch model called on an image tensor (a LoadedModel, a MemoryBankScorer)."""
    import torch

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            maps, scores = model(torch.from_numpy(images))
        return maps.numpy(), scores.numpy()

    return predict


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start positions covering [0, length) with tiles of size tile overlapping by about overlap."""
    if length <= tile:
        return [0]
    step = max(1, int(round(tile * (1 - overlap))))
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)  # the last tile ends at the border
    return starts


def padded(part: np.ndarray, tile: int) -> np.ndarray:
    """A region smaller than a tile, mirrored out to one (masks alike, so they stay aligned)."""
    h, w = part.shape[:2]
    if tile <= min(w, h):
        return part
    return cv2.copyMakeBorder(part, 0, max(0, tile - h), 0, max(0, tile - w), cv2.BORDER_REFLECT)


def tile_boxes(shape: tuple[int, int], tile: int, overlap: float) -> list[tuple[int, int]]:
    """(y, x) of each tile over a (padded) region, row by row: the service's tiling."""
    return [(ty, tx) for ty in tile_origins(shape[0], tile, overlap) for tx in tile_origins(shape[1], tile, overlap)]


def region(shape: tuple[int, int], roi: list[int] | None) -> tuple[int, int, int, int]:
    h, w = shape
    if roi is None:
        return 0, 0, w, h
    x, y, rw, rh = roi
    if x < 0 or y < 0 or rw <= 0 or rh <= 0 or x + rw > w or y + rh > h:
        raise UserError(f"inspection.roi {roi} lies outside the {w} x {h} frame")
    return x, y, rw, rh


def inspect_frame(image: np.ndarray, infer, size: int, cfg) -> Inspection:
    """infer: (B, 3, S, S) float32 -> (maps (B, S, S), scores (B,)); cfg: InspectionConfig."""
    x, y, w, h = roi = region(image.shape[:2], cfg.roi)
    if cfg.mode == "resize":
        # resized before a mono frame is made BGR: a third of the pixels to filter
        small = shrink(image[y : y + h, x : x + w], size)
        maps, scores = infer(to_tensor_layout([as_bgr(small)]))
        return Inspection(maps[0], float(scores[0]), 1, image.shape[:2], roi)
    tile = cfg.tile_size or size
    part = padded(as_bgr(image[y : y + h, x : x + w]), tile)
    ph, pw = part.shape[:2]
    boxes = tile_boxes((ph, pw), tile, cfg.overlap)
    acc = np.zeros((ph, pw), np.float32)
    hits = np.zeros((ph, pw), np.float32)
    tile_scores = []
    for start in range(0, len(boxes), cfg.batch):
        chunk = boxes[start : start + cfg.batch]
        crops = [part[ty : ty + tile, tx : tx + tile] for ty, tx in chunk]
        if tile != size:
            crops = [shrink(c, size) for c in crops]
        maps, scores = infer(to_tensor_layout(crops))
        tile_scores.append(scores)
        for (ty, tx), m in zip(chunk, maps):
            if tile != size:
                m = cv2.resize(m, (tile, tile), interpolation=cv2.INTER_LINEAR)
            acc[ty : ty + tile, tx : tx + tile] += m
            hits[ty : ty + tile, tx : tx + tile] += 1
    stitched = np.ascontiguousarray((acc / np.maximum(hits, 1))[:h, :w])
    tile_scores = np.concatenate(tile_scores)
    return Inspection(stitched, float(tile_scores.max()), len(boxes), image.shape[:2], roi, tile_scores)
