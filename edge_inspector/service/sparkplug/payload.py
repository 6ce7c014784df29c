"""Sparkplug B payloads: typed metrics written with the generated module (sparkplug_b_pb2), and read.

A metric is defined once (name, alias, datatype): BIRTH carries name and alias, DATA the alias
alone (Sparkplug 3.0, "Metric aliases"). Values are None for "no value yet" (is_null).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge_inspector.service.sparkplug import sparkplug_b_pb2 as pb

NAMESPACE = "spBv1.0"
INT64, FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME = pb.Int64, pb.Float, pb.Double, pb.Boolean, pb.String, pb.DateTime
_U64 = 1 << 64


@dataclass(frozen=True)
class MetricDef:
    name: str
    alias: int
    datatype: int


def now_ms() -> int:
    return int(time.time() * 1000)


def _set(metric, datatype: int, value: Any) -> None:
    if value is None:
        metric.is_null = True
    elif datatype in (INT64, DATETIME):
        metric.long_value = int(value) % _U64  # Int64 on the wire: two's complement in a uint64
    elif datatype == FLOAT:
        metric.float_value = float(value)
    elif datatype == DOUBLE:
        metric.double_value = float(value)
    elif datatype == BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype == STRING:
        metric.string_value = str(value)
    else:
        raise ValueError(f"datatype {datatype} is not written by this node")


def value_of(metric) -> Any:
    """A decoded metric's value, Int64 signed again; None where is_null."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    value = getattr(metric, kind) if kind else None
    if metric.datatype == INT64 and value is not None and value >= 1 << 63:
        value -= _U64
    return value


def encode(metrics: Iterable[tuple[MetricDef, Any]], seq: int | None, birth: bool = False,
           timestamp: int | None = None, historical: bool = False) -> bytes:
    """A payload of metrics; names only on BIRTH; seq None for NDEATH (it carries none)."""
    sent = now_ms()
    payload = pb.Payload(timestamp=sent)
    if seq is not None:
        payload.seq = seq
    for definition, value in metrics:
        metric = payload.metrics.add(alias=definition.alias, timestamp=timestamp or sent, datatype=definition.datatype)
        if birth:
            metric.name = definition.name
        if historical:
            metric.is_historical = True
        _set(metric, definition.datatype, value)
    return payload.SerializeToString()


def death(bd_seq: int) -> bytes:
    """NDEATH: the bdSeq metric by name (no alias: a host may see it before any birth), no seq."""
    payload = pb.Payload(timestamp=now_ms())
    metric = payload.metrics.add(name="bdSeq", timestamp=payload.timestamp, datatype=INT64)
    _set(metric, INT64, bd_seq)
    return payload.SerializeToString()


def decode(data: bytes) -> pb.Payload:
    payload = pb.Payload()
    payload.ParseFromString(data)
    return payload


class Topics:
    """spBv1.0/<group>/<type>/<edge node>[/<device>], and the primary host's STATE topic."""

    def __init__(self, group: str, node: str, device: str, host: str | None):
        self.base, self.node, self.device = f"{NAMESPACE}/{group}", node, device
        self.state = f"{NAMESPACE}/STATE/{host}" if host else None

    def of(self, kind: str) -> str:
        """NBIRTH, NDEATH, NDATA, NCMD: the node's; DBIRTH, DDATA, DCMD: its camera device's."""
        topic = f"{self.base}/{kind}/{self.node}"
        return topic + f"/{self.device}" if kind.startswith("D") else topic
