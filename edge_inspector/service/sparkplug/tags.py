"""What the edge node publishes: its node metrics (the station) and its device metrics (the camera's
last verdict), with fixed aliases, and how each is read from the service's status and a verdict
message. docs/sparkplug.md lists them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edge_inspector.service.sparkplug.payload import BOOLEAN, DATETIME, DOUBLE, INT64, STRING, MetricDef

REBIRTH = "Node Control/Rebirth"

# aliases are unique across the node and its devices (Sparkplug 3.0); never reuse a number
NODE = [MetricDef(name, alias, kind) for alias, (name, kind) in enumerate([
    ("bdSeq", INT64),
    (REBIRTH, BOOLEAN),
    ("Properties/Station", STRING),
    ("Properties/Epoch", STRING),
    ("Model/Version", STRING),
    ("Model/Hash", STRING),
    ("Model/Backend", STRING),
    ("Model/Threshold", DOUBLE),
    ("Model/Pixel Threshold", DOUBLE),
    ("Verdicts/OK", INT64),
    ("Verdicts/NG", INT64),
    ("Verdicts/ERROR", INT64),
    ("Outbox/Depth", INT64),
    ("Broker/Refusals", INT64),
    ("Camera/State", STRING),
], start=1)]

DEVICE = [MetricDef(name, alias, kind) for alias, (name, kind) in enumerate([
    ("Inspection/Seq", INT64),
    ("Inspection/Verdict", STRING),
    ("Inspection/Score", DOUBLE),
    ("Inspection/Threshold", DOUBLE),
    ("Inspection/Part Id", STRING),
    ("Inspection/Region Count", INT64),
    ("Inspection/Largest Region Area", INT64),
    ("Inspection/Latency ms", DOUBLE),
    ("Inspection/Captured At", DATETIME),
    ("Inspection/Error", STRING),
    ("Frame/Width", INT64),
    ("Frame/Height", INT64),
], start=101)]

BY_NAME = {d.name: d for d in NODE + DEVICE}


def node_values(status: dict, bd_seq: int) -> dict[str, Any]:
    """Node metric values from LineService.status() (service/control.py)."""
    model, counts = status.get("model") or {}, status.get("verdicts", {})
    return {
        "bdSeq": bd_seq, REBIRTH: False,
        "Properties/Station": status.get("station"), "Properties/Epoch": status.get("epoch"),
        "Model/Version": model.get("version"), "Model/Hash": model.get("sha256"), "Model/Backend": model.get("backend"),
        "Model/Threshold": status.get("threshold"), "Model/Pixel Threshold": status.get("pixel_threshold"),
        "Verdicts/OK": counts.get("OK", 0), "Verdicts/NG": counts.get("NG", 0),
        "Verdicts/ERROR": counts.get("ERROR", 0),
        "Outbox/Depth": status.get("outbox_depth"), "Broker/Refusals": status.get("broker_refusals"),
        "Camera/State": status.get("availability"),
    }


def device_values(message: dict) -> dict[str, Any]:
    """Device metric values from a verdict message (service/verdict.py)."""
    regions = message.get("regions") or []
    frame = message.get("frame") or {}
    return {
        "Inspection/Seq": message["seq"], "Inspection/Verdict": message["verdict"],
        "Inspection/Score": message.get("score"), "Inspection/Threshold": message.get("threshold"),
        "Inspection/Part Id": message.get("part_id"), "Inspection/Region Count": len(regions),
        "Inspection/Largest Region Area": max((r["area"] for r in regions), default=0),
        "Inspection/Latency ms": (message.get("latency_ms") or {}).get("total"),
        "Inspection/Captured At": captured_ms(message), "Inspection/Error": message.get("error"),
        "Frame/Width": frame.get("width"), "Frame/Height": frame.get("height"),
    }


def captured_ms(message: dict) -> int | None:
    """The verdict's capture time as Sparkplug's DateTime (ms since the epoch, UTC)."""
    stamp = message.get("captured_at")
    return int(datetime.fromisoformat(stamp).timestamp() * 1000) if stamp else None


def metrics(values: dict[str, Any]) -> list[tuple[MetricDef, Any]]:
    return [(BY_NAME[name], value) for name, value in values.items()]
