"""A station file around a trained model, and the line service run on a thread of the test's."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import yaml

from edge_inspector.config import load_config
from edge_inspector.service.pipeline import LineService
from tests.mqtt_helpers import Collector


def station(tmp_path: Path, model, camera: dict, broker_port: int | None, **extra) -> Path:
    cfg = {"station": "st1", "model": {"kind": "kmdgan", "input_size": 128, "artefact": str(model.path)},
           "camera": camera, "service": {"state_dir": str(tmp_path / "state"), "queue_size": 500}}
    if broker_port:
        cfg["mqtt"] = {"host": "127.0.0.1", "port": broker_port, "protocol": "3.1.1", "keepalive": 5,
                       "publish_mask": "ng", **extra.pop("mqtt", {})}
    cfg.update(extra)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start(service: LineService) -> threading.Thread:
    t = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    t.start()
    return t


class NotifySocket:
    """What systemd does with NOTIFY_SOCKET: read every datagram as it comes."""

    def __init__(self, tmp_path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.path = tmp_path / "notify.sock"
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self.done.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass


@contextlib.contextmanager
def triggered_station_online(tmp_path: Path, model, frames: Path, broker):
    """(service, subscriber) for a station with a software-triggered replay camera on a broker of
    the test's own, once its status says online; stopped and closed afterwards."""
    collector = Collector(broker.port, "edge-inspector/st1/#")
    camera = {"type": "folder", "path": str(frames), "trigger": "software"}
    service = LineService(load_config(station(tmp_path, model, camera, broker.port)))
    runner = start(service)
    try:
        assert collector.wait(lambda c: c.on("/status") and c.on("/status")[-1] == b"online", 60)
        yield service, collector
    finally:
        service.stop_event.set()
        runner.join(60)
        collector.close()

