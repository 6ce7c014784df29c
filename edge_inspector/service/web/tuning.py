"""Threshold tuning on real frames: the last inspected frames (kept by reference, so the inspection
loop pays nothing but a deque append) and the calibration's held-out scores, judged again at
thresholds the page proposes, with the service's own decision rule."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_inspector.calibration.held_out import gates
from edge_inspector.calibration.held_out import rates as held_out_rates
from edge_inspector.service.web.render import regions_at


@dataclass
class Seen:
    """One inspected frame: the image and inspection result are the pipeline's own objects."""

    seq: int
    source: str | None
    part_id: str | None
    image: np.ndarray
    result: object  # inspection.frame.Inspection
    score: float
    verdict: str


class Replay:
    """The last frames, and a frozen copy of them that tuning judges: the set under the sliders does
    not move while the line runs on; the page takes a new copy when it opens or is refreshed."""

    def __init__(self, size: int):
        self.items: deque[Seen] = deque(maxlen=size)
        self.frozen: list[Seen] = []
        self.lock = threading.Lock()

    def freeze(self) -> None:
        with self.lock:
            self.frozen = list(self.items)

    def add(self, seen: Seen) -> None:
        with self.lock:
            self.items.append(seen)

    def get(self, seq: int) -> Seen | None:
        with self.lock:
            return next((s for s in self.frozen if s.seq == seq), None)

    def judge(self, threshold: float, pixel_threshold: float, min_area: int, extent: float | None = None
              ) -> list[dict]:
        with self.lock:
            items = list(self.frozen)
        out = []
        for s in items:
            d = regions_at(s.result, s.score, threshold, pixel_threshold, min_area, extent)
            out.append({"seq": s.seq, "source": s.source, "part_id": s.part_id, "score": round(s.score, 5),
                        "verdict_then": s.verdict, "verdict": d.verdict, "regions": len(d.regions),
                        "largest_area": d.regions[0].area if d.regions else 0})
        return out


def held_out(calibration: Path | None) -> dict:
    """The current calibration's held-out normal and defect scores (calibration.json), if recorded,
    with which of them have a region where the calibration counted regions (held_out_regions)."""
    if calibration is None or not (calibration / "calibration.json").is_file():
        return {"normal": [], "defect": [], "regions": None, "version": None}
    record = json.loads((calibration / "calibration.json").read_text())
    scores = record.get("held_out_scores") or {}
    return {"normal": scores.get("normal") or [], "defect": scores.get("defect") or [],
            "regions": record.get("held_out_regions"), "version": calibration.name}


def rates(scores: dict, threshold: float, pixel_threshold: float, min_area: int) -> dict:
    """What the held-out parts say of a setting: normals rejected, defects let through; with
    min_area > 0, NG also needs a region, counted where the calibration cut the regions at this
    pixel threshold (else by score alone, regions_counted false)."""
    gate = gates(scores.get("regions"), pixel_threshold, min_area)
    return held_out_rates(scores["normal"], scores["defect"], threshold, *gate)
