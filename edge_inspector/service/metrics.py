"""Prometheus metrics of the line service, in a registry of its own (served only when configured)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

STAGES = ("queue", "preprocess_and_inference", "postprocess", "publish", "total")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.frames = Counter("edge_inspector_frames", "Frames captured", registry=r)
        self.verdicts = Counter("edge_inspector_verdicts", "Verdicts produced", ["verdict"], registry=r)
        self.drops = Counter("edge_inspector_dropped_frames", "Free-run frames dropped under back-pressure", registry=r)
        self.unreadable = Counter("edge_inspector_unreadable_frames", "Frames that could not be read", registry=r)
        self.latency = Histogram("edge_inspector_stage_seconds", "Per-stage latency", ["stage"], buckets=BUCKETS,
                                 registry=r)
        self.queue_depth = Gauge("edge_inspector_queue_depth", "Frames waiting for inference", registry=r)
        self.outbox_depth = Gauge("edge_inspector_outbox_depth", "Messages not yet acknowledged by the broker",
                                  registry=r)
        self.camera_connected = Gauge("edge_inspector_camera_connected", "1 while the camera is open", registry=r)
        self.camera_reconnects = Counter("edge_inspector_camera_reconnects", "Camera reopened after a loss",
                                         registry=r)
        self.broker_connected = Gauge("edge_inspector_broker_connected", "1 while connected to the broker",
                                      registry=r)
        self.refusals = Gauge("edge_inspector_broker_refusals", "PUBACKs with a failure reason code since start",
                              registry=r)
        self.refused_pending = Gauge("edge_inspector_refused_pending", "Refused messages kept for a retry", registry=r)
        self.outbox_dropped = Gauge("edge_inspector_outbox_dropped", "Messages dropped by the outbox bound",
                                    ["kind"], registry=r)
        self.refused_triggers = Counter("edge_inspector_refused_triggers", "Software triggers refused (backlog "
                                        "full, not ready)", registry=r)
        self.orphaned_triggers = Counter("edge_inspector_orphaned_triggers", "Accepted triggers answered with an "
                                         "ERROR verdict because their frame was never inspected", registry=r)
        self.server = None

    def serve(self, host: str, port: int) -> None:
        self.server, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
