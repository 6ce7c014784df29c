"""Verdict from an anomaly map and score: threshold, defect regions (connected components with
bounding box, area and peak), minimum defect area.

The map is cut with hysteresis: a region is a connected part of the map at or above the extent
level that reaches the pixel threshold somewhere. The pixel threshold decides whether there is a
defect (it keeps good parts clean); the lower extent level decides how far it reaches (one level
for both draws masks that are either speckled on good parts or a fraction of the defect).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_inspector.model.mask_cut import cut_mask


@dataclass
class Region:
    x: int
    y: int
    width: int
    height: int
    area: int
    peak: float

    def as_dict(self) -> dict:
        return {"bbox": [self.x, self.y, self.width, self.height], "area": self.area, "peak": round(self.peak, 4)}


@dataclass
class Decision:
    verdict: str  # OK or NG
    regions: list[Region] = field(default_factory=list)
    mask: np.ndarray | None = None  # uint8 0/255 at the map's resolution


def decide(anomaly_map: np.ndarray, score: float, threshold: float, pixel_threshold: float,
           min_area: int, max_regions: int = 32, scale: tuple[float, float] = (1.0, 1.0),
           offset: tuple[int, int] = (0, 0), extent: float | None = None) -> Decision:
    """NG when the score reaches the threshold and, with min_area > 0, a region is at least that large.
    Regions are listed, largest first, whatever the verdict (a SCADA view may show near-misses).
    scale (frame pixels per map pixel, x and y) and offset put regions in frame coordinates;
    min_area is in frame pixels; extent: the hysteresis level (cut_mask)."""
    mask = cut_mask(anomaly_map, pixel_threshold, extent)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    sx, sy = scale
    areas = stats[1:, cv2.CC_STAT_AREA] * (sx * sy)
    keep = np.nonzero(areas >= max(1e-9, min_area))[0]
    # largest first; peaks only for the regions reported (a noisy map can have thousands)
    keep = keep[np.argsort(-areas[keep], kind="stable")][:max_regions] + 1
    regions = []
    for i in keep:
        x, y, w, h, _ = (int(v) for v in stats[i])
        peak = float(anomaly_map[y : y + h, x : x + w][labels[y : y + h, x : x + w] == i].max())
        regions.append(Region(offset[0] + int(x * sx), offset[1] + int(y * sy), max(1, round(w * sx)),
                              max(1, round(h * sy)), int(round(areas[i - 1])), peak))
    ng = score >= threshold and (min_area == 0 or bool(regions))
    return Decision("NG" if ng else "OK", regions, mask * 255)
