"""A Mosquitto broker of a test's own (free loopback port, its own files) and a collecting subscriber.
The shared broker on 1883 is never touched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HAVE_MOSQUITTO = Path(MOSQUITTO).is_file() and shutil.which("mosquitto_passwd") is not None
MISSING = "Mosquitto (mosquitto, mosquitto_passwd) not installed: sudo apt install mosquitto"
# tests that start their own broker: skipped with the reason where Mosquitto is not installed on a
# user's machine; in CI (CI=true) they run regardless, and Broker.start fails with the reason
IN_CI = os.environ.get("CI", "").lower() == "true"
needs_mosquitto = pytest.mark.skipif(not HAVE_MOSQUITTO and not IN_CI, reason=MISSING)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path, users: dict[str, str] | None = None, acl: str | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.dir}/",
                 "max_queued_messages 100000", f"log_dest file {self.dir}/mosquitto.log"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to its own user, who cannot read pytest's folders
        if users:
            pw = self.dir / "passwords"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.acl = self.dir / "acl"
        if acl is not None:
            self.acl.write_text(acl)
            lines.append(f"acl_file {self.acl}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self) -> Broker:
        if not HAVE_MOSQUITTO:
            raise RuntimeError(f"{MISSING} (CI=true: a broker test may not skip)")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def reload_acl(self, acl: str) -> None:
        """A new ACL, read by the running broker on SIGHUP (as an operator fixing it would)."""
        self.acl.write_text(acl)
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """SIGTERM: the broker saves its persistent sessions (as a restarted plant broker would have them)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_until(predicate, timeout: float = 30.0, every: float = 0.05) -> bool:
    """Poll predicate() until it holds or timeout passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


class Collector:
    """A persistent-session QoS 1 subscriber (as a PLC gateway would be) that records what arrives."""

    def __init__(self, port: int, topic: str, client_id: str = "test-collector", username: str | None = None,
                 password: str | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def on(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t.endswith(suffix)]

    def verdicts(self) -> list[dict]:
        return [json.loads(p) for p in self.on("/verdict")]

    def wait(self, predicate, timeout: float = 30.0) -> bool:
        return wait_until(lambda: predicate(self), timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def first_seen_order(seqs: list[int]) -> list[int]:
    seen, out = set(), []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
