"""A Sparkplug host's view for tests: every spBv1.0 message decoded with the generated module, and a
TCP relay in front of the broker whose connections a test can cut (a pulled cable, as the broker sees it)."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_inspector.service.sparkplug.payload import decode, value_of
from tests.mqtt_helpers import free_port, wait_until


@dataclass
class Seen:
    topic: str
    kind: str  # NBIRTH, DDATA, ...
    payload: object  # the decoded Payload
    qos: int
    retain: bool

    def values(self) -> dict:
        """name (BIRTH, NDEATH) or alias (DATA) -> value."""
        return {m.name or m.alias: value_of(m) for m in self.payload.metrics}


class Host:
    """Subscribes spBv1.0/# at QoS 1: what arrives at QoS 0 was published at QoS 0."""

    def __init__(self, port: int, group: str = "line1"):
        self.port, self.group = port, group
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-host-{free_port()}",
                                  protocol=mqtt.MQTTv311)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("spBv1.0/#", qos=1)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.startswith("spBv1.0/STATE/"):
            return
        kind = msg.topic.split("/")[2]
        if kind in ("NCMD", "DCMD"):  # the host's own, some hostile on purpose: only the node's are kept
            return
        with self.lock:
            self.seen.append(Seen(msg.topic, kind, decode(msg.payload), msg.qos, msg.retain))

    def of(self, *kinds: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.kind in kinds]

    def wait(self, predicate, timeout: float = 20.0) -> bool:
        return wait_until(lambda: predicate(self), timeout)

    def publish_state(self, host_id: str, online: bool, timestamp: int) -> None:
        """What a primary host application publishes (Sparkplug 3.0: JSON, QoS 1, retained)."""
        info = self.client.publish(f"spBv1.0/STATE/{host_id}", json.dumps({"online": online, "timestamp": timestamp}),
                                   qos=1, retain=True)
        info.wait_for_publish(5)

    def command(self, topic: str, data: bytes) -> None:
        self.client.publish(topic, data, qos=0).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Relay:
    """127.0.0.1:<port> -> the broker; cut() closes every relayed connection at once without a
    DISCONNECT, so the broker publishes the client's will."""

    def __init__(self, target_port: int):
        self.target, self.port = target_port, free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.server.settimeout(0.2)
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.running = False
        self.cut()
        self.server.close()
