"""What the held-out parts of a calibration say of a setting: normals rejected and defects let
through, judged as the service judges them. With `threshold.min_defect_area` > 0 a part is NG only
if its score reaches the threshold and its mask holds a region of at least that many frame pixels,
so a rate counted on the scores alone would tell of rejections the region rule keeps OK.

Which held-out parts have such a region is measured once, at calibration, at the calibrated pixel
levels (`calibration.json`, `held_out_regions`). A later setting with another pixel threshold or
another minimum area cannot reuse it (its regions were never cut): its rates are by score alone,
and say so (`regions_counted` false).
"""

from __future__ import annotations

import numpy as np

from edge_inspector.inspection.postprocess import decide
from edge_inspector.model.scoring import rate_upper_bound


def has_regions(inspections: list, pixel_threshold: float, extent: float | None, min_area: int) -> list[bool]:
    """Per Inspection: whether the service's cut keeps a region of at least min_area frame pixels."""
    return [bool(decide(r.anomaly_map, r.score, np.inf, pixel_threshold, max(min_area, 1), scale=r.scale,
                        offset=r.roi[:2], extent=extent).regions) for r in inspections]


def regions_record(normal: list[bool], defect: list[bool], pixel_threshold: float, extent: float | None,
                   min_area: int) -> dict:
    """calibration.json's `held_out_regions`: the regions and the levels they were cut at."""
    return {"normal": normal, "defect": defect, "pixel_threshold": pixel_threshold, "pixel_extent": extent,
            "min_defect_area": min_area}


def gates(regions: dict | None, pixel_threshold: float, min_area: int) -> tuple[list | None, list | None]:
    """(normal, defect) region flags that apply to a setting, or (None, None): the region rule is off
    (min_area 0), or the recorded regions were cut at other levels."""
    if not min_area or not regions or regions.get("min_defect_area") != min_area \
            or not np.isclose(regions.get("pixel_threshold", np.nan), pixel_threshold):
        return None, None
    return regions["normal"], regions["defect"]


def ng(scores, threshold: float, gate=None) -> np.ndarray:
    """Per part, NG: the score at or above threshold (in float64, as the service compares) and,
    where a gate is given, a region."""
    hit = np.asarray(scores, dtype=np.float64) >= threshold
    return hit & np.asarray(gate, dtype=bool) if gate is not None else hit


def rates(normal, defect, threshold: float, normal_gate=None, defect_gate=None) -> dict:
    """Held-out normals rejected and defects escaped at threshold, each NG also needing a region
    where a gate is given."""
    rejected = int(ng(normal, threshold, normal_gate).sum())
    escaped = int((~ng(defect, threshold, defect_gate)).sum())
    return {"normal_rejected": rejected, "normal_total": len(normal),
            "false_reject_rate": rejected / len(normal) if len(normal) else None,
            "false_reject_upper_95": rate_upper_bound(rejected, len(normal)),
            "defect_escaped": escaped, "defect_total": len(defect),
            "escape_rate": escaped / len(defect) if len(defect) else None,
            "regions_counted": normal_gate is not None}
