"""The verdict message (JSON, schema edge-inspector.verdict/1, documented in docs/mqtt.md) and the
defect mask PNG."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import cv2
import numpy as np

SCHEMA = "edge-inspector.verdict/1"


def verdict_message(epoch: str, seq: int, station: str, frame, decision, score: float | None, threshold: float,
                    latency_ms: dict[str, float], model: dict, inspection: str, error: str | None = None,
                    mask_topic: str | None = None) -> dict:
    h, w = frame.image.shape[:2] if frame.image is not None else (None, None)
    return {
        "schema": SCHEMA,
        "seq": seq,
        "epoch": epoch,
        "station": station,
        "camera": frame.camera,
        "part_id": frame.part_id,
        "captured_at": datetime.fromtimestamp(frame.captured_at, timezone.utc).isoformat(timespec="milliseconds"),
        "verdict": decision.verdict if decision is not None else "ERROR",
        "score": None if score is None else round(float(score), 5),
        "threshold": round(float(threshold), 5),
        "regions": [r.as_dict() for r in decision.regions] if decision is not None else [],
        "frame": {"width": w, "height": h, "source": frame.source},
        "inspection": inspection,
        "latency_ms": {k: round(v, 2) for k, v in latency_ms.items()},
        "model": model,
        "mask_topic": mask_topic,
        "error": error,
    }


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def mask_png(mask: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", mask)
    return data.tobytes() if ok else b""
