"""What the commissioning page shows of a frame, drawn only when someone asks: the defect mask over
the frame, the regions, the region of interest and the tile grid; and the setup aids (focus and
exposure) with the same measures calibrate screens frames with (calibration/quality.py)."""

from __future__ import annotations

import cv2
import numpy as np

from edge_inspector.calibration.quality import CLIP_SHARE, measure
from edge_inspector.inspection.frame import as_bgr, tile_origins
from edge_inspector.inspection.postprocess import cut_mask, decide

MAX_WIDTH = 960  # the live view is scaled down to this: a tablet shows no more, and the link is spared
RED, YELLOW, GREEN, BLUE = (40, 40, 230), (0, 220, 255), (80, 200, 60), (230, 160, 40)


def overlay(image: np.ndarray, result, regions, pixel_threshold: float, inspection,
            extent: float | None = None) -> np.ndarray:
    """The frame with the mask (the map cut as the service cuts it) in red, region boxes in yellow, the
    ROI in green and, in tile mode, the tile grid in blue; scaled to MAX_WIDTH at most."""
    out = as_bgr(image).copy()
    if result is not None:
        mask = result.to_frame(cut_mask(result.anomaly_map, pixel_threshold, extent)) > 0
        out[mask] = (0.45 * out[mask] + 0.55 * np.array(RED)).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, RED, 2)
        x, y, w, h = result.roi
        if inspection.mode == "tiles":
            tile = inspection.tile_size or result.anomaly_map.shape[0]
            for ty in tile_origins(h, tile, inspection.overlap):
                for tx in tile_origins(w, tile, inspection.overlap):
                    cv2.rectangle(out, (x + tx, y + ty), (x + tx + tile - 1, y + ty + tile - 1), BLUE, 1)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), GREEN, 2)
    for r in regions or []:
        cv2.rectangle(out, (r.x, r.y), (r.x + r.width - 1, r.y + r.height - 1), YELLOW, 2)
    if out.shape[1] > MAX_WIDTH:
        scale = MAX_WIDTH / out.shape[1]
        out = cv2.resize(out, (MAX_WIDTH, round(out.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return out


def regions_at(result, score: float, threshold: float, pixel_threshold: float, min_area: int,
               extent: float | None = None):
    """The service's own decision (inspection/postprocess.py) at other thresholds."""
    return decide(result.anomaly_map, score, threshold, pixel_threshold, min_area, extent=extent, scale=result.scale,
                  offset=result.roi[:2])


def jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes() if ok else b""


def setup_aids(image: np.ndarray) -> dict:
    """Focus (Laplacian variance at 256 px, as calibrate measures it), clipped shares and a 64-bin
    grey histogram: what a lens and lighting are adjusted by."""
    m = measure(image)
    grey = image if image.ndim == 2 else cv2.cvtColor(as_bgr(image), cv2.COLOR_BGR2GRAY)
    hist = cv2.calcHist([grey], [0], None, [64], [0, 256]).ravel()
    return {"focus": round(m.sharpness, 1), "clipped_white": round(m.bright, 4), "clipped_black": round(m.dark, 4),
            "clip_limit": CLIP_SHARE, "histogram": [round(float(v) / max(float(hist.sum()), 1.0), 5) for v in hist],
            "width": int(image.shape[1]), "height": int(image.shape[0])}
