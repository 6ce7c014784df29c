"""A station file around a trained model, and the line service run on a thread of the test's."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import yaml

from edge_inspector.service.pipeline import LineService


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
