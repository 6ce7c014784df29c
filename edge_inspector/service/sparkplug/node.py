"""The station as a Sparkplug B 3.0 edge node, on a connection of its own (its will is an NDEATH, not
the JSON link's "offline"), beside the JSON topics. docs/sparkplug.md says how it behaves.

Threads: paho's network thread only records events; one worker thread owns the session (births,
seq, what was last sent) and does every publish, so that seq is never raced. bdSeq belongs to the
connection: it goes up by one (255 -> 0) for each CONNECT, its will is set before paho connects
again, and the last one sent is kept in the state folder so that a restarted process does not repeat it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_inspector.service.commands import printable
from edge_inspector.service.mqtt import new_client
from edge_inspector.service.outbox import Outbox
from edge_inspector.service.sparkplug import payload as spb
from edge_inspector.service.sparkplug import tags

log = logging.getLogger(__name__)

TICK_S = 1.0  # node metrics are compared with what was last sent this often (NDATA on change)
MAX_COMMAND_BYTES = 65536  # NCMD, DCMD and STATE payloads beyond this are ignored unread
REPLAY_BATCH = 100


class SparkplugNode:
    def __init__(self, mqtt_cfg, cfg, station: str, state: Path, status):
        """status() -> the service's status (LineService.sparkplug_status)."""
        self.cfg, self.status = cfg, status
        self.topics = spb.Topics(cfg.group_id, cfg.edge_node_id or station, cfg.device_id, cfg.primary_host_id)
        self.bd_file = state / "sparkplug-bdseq"
        self.bd_seq = self._next_bd_seq()
        self.history = Outbox(state / "sparkplug-history.sqlite3", int(cfg.history_max_mb * 2**20))
        self.events: queue.Queue = queue.Queue()
        self.client = new_client(mqtt_cfg, cfg.client_id or f"edge-inspector-{station}-sparkplug")
        self.client.max_queued_messages_set(10000)
        self._will()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.events.put(("subscribed", mid))
        self.client.on_message = self._on_message
        self.host, self.port, self.keepalive = mqtt_cfg.host, mqtt_cfg.port, mqtt_cfg.keepalive
        self.protocol5 = mqtt_cfg.protocol == "5"
        # the session, owned by the worker thread
        self.session_bd: int | None = None  # bdSeq of the live connection
        self.sub_mid: int | None = None
        self.subscribed = self.born = False
        self.host_online = cfg.primary_host_id is None
        self.host_ts = -1
        self.seq = 0
        self.sent_node: dict = {}  # what the host holds now: NDATA and DDATA send what differs
        self.sent_device: dict = {}
        self.last_device: dict = {}
        self.worker = threading.Thread(target=self._work, name="sparkplug", daemon=True)

    # --- bdSeq and the will (paho's thread between connections; the constructor before the first) ---
    def _next_bd_seq(self) -> int:
        try:
            return (int(self.bd_file.read_text()) + 1) % 256
        except (OSError, ValueError):
            return 0

    def _will(self) -> None:
        self.client.will_set(self.topics.of("NDEATH"), spb.death(self.bd_seq), qos=1, retain=False)

    def _keep_bd_seq(self) -> None:
        """The bdSeq a CONNECT carried, for the next process to go on from."""
        tmp = self.bd_file.with_suffix(".tmp")
        try:
            tmp.write_text(str(self.bd_seq))
            tmp.replace(self.bd_file)
        except OSError as exc:
            log.warning("sparkplug: cannot keep bdSeq in %s (%s); a restart begins at 0", self.bd_file, exc.strerror)

    # --- paho callbacks: record, never publish ---
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._keep_bd_seq()
        if reason_code.is_failure:
            log.error("sparkplug: broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        self.events.put(("connected", self.bd_seq))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.bd_seq = (self.bd_seq + 1) % 256  # the next CONNECT's will
        self._will()
        self.events.put(("disconnected", None))

    def _on_message(self, client, userdata, message) -> None:
        if len(message.payload) <= MAX_COMMAND_BYTES:
            self.events.put(("message", (message.topic, bytes(message.payload))))

    # --- the service's side ---
    def start(self) -> None:
        self.worker.start()
        self._connect()

    def _connect(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive,
                                  clean_start=True if self.protocol5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY)
        self.client.loop_start()

    def verdict(self, message: dict) -> None:
        self.events.put(("verdict", message))

    def rebirth(self) -> None:
        self.events.put(("rebirth", None))

    def stop(self, timeout: float = 5.0) -> None:
        """NDEATH (QoS 1) where connected, then disconnect; verdicts not yet heard stay in history."""
        if self.worker.is_alive():  # never started where the model failed to load
            self.events.put(("stop", timeout))
            self.worker.join(timeout + 2)
        self.client.loop_stop()
        self.history.close()

    # --- the worker ---
    def _work(self) -> None:
        while True:
            try:
                kind, value = self.events.get(timeout=TICK_S)
            except queue.Empty:
                kind, value = "tick", None
            try:
                if kind == "stop":
                    self._stop(value)
                    return
                getattr(self, f"_{kind}")(value)
                if kind != "disconnected":
                    self._node_data()
            except Exception:  # a bug here must not end the node: logged, the next event goes on
                log.exception("sparkplug: %s event failed", kind)

    def _connected(self, bd_seq: int) -> None:
        self.session_bd, self.born, self.subscribed = bd_seq, False, False
        subs = [(self.topics.of("NCMD"), 1), (self.topics.of("DCMD"), 1)]
        if self.topics.state:
            subs.append((self.topics.state, 1))
        self.sub_mid = self.client.subscribe(subs)[1]  # NBIRTH waits for the SUBACK

    def _disconnected(self, _) -> None:
        self.session_bd, self.born, self.subscribed = None, False, False

    def _subscribed(self, mid: int) -> None:
        if mid == self.sub_mid:
            self.subscribed = True
            self._birth_when_ready()

    def _birth_when_ready(self) -> None:
        if self.subscribed and self.host_online and not self.born:
            self._birth()
            self._replay()

    def _birth(self) -> None:
        values = tags.node_values(self.status(), self.session_bd)
        self.seq = 0
        self._publish("NBIRTH", spb.encode(tags.metrics(values), 0, birth=True))
        self.sent_node = values
        device = {d.name: self.last_device.get(d.name) for d in tags.DEVICE}
        self._publish("DBIRTH", spb.encode(tags.metrics(device), self._next_seq(), birth=True))
        self.sent_device = device
        self.born = True
        log.info("sparkplug: NBIRTH and DBIRTH sent as %s (bdSeq %d)", self.topics.of("NBIRTH"), self.session_bd)

    def _rebirth(self, _) -> None:
        if self.session_bd is not None and self.subscribed and self.host_online:
            self.born = False
            self._birth()

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def _publish(self, kind: str, data: bytes, qos: int = 0) -> mqtt.MQTTMessageInfo:
        return self.client.publish(self.topics.of(kind), data, qos=qos, retain=False)

    def _verdict(self, message: dict) -> None:
        values = tags.device_values(message)
        self.last_device = values
        if not self.born:  # no host hears it now: kept, and replayed as history after the next birth
            self.history.add_verdict(lambda seq: [("DDATA", json.dumps(values).encode(), 0, False, "verdict")])
            return
        self._replay()  # what waits goes first, in order
        self._device_data(values)

    def _device_data(self, values: dict, historical: bool = False) -> bool:
        """Live: the metrics that changed. Historical: the whole record, stamped with its capture time."""
        if historical:
            sent, timestamp = values, values.get("Inspection/Captured At")
        else:
            sent, timestamp = {k: v for k, v in values.items() if self.sent_device.get(k) != v}, None
            self.sent_device = values
        data = spb.encode(tags.metrics(sent), self._next_seq(), timestamp=timestamp, historical=historical)
        return self._publish("DDATA", data).rc == mqtt.MQTT_ERR_SUCCESS

    def _replay(self) -> None:
        while self.born:
            rows = self.history.pending(0, REPLAY_BATCH)
            if not rows:
                return
            for row in rows:
                if not self._device_data(json.loads(row.payload), historical=True):
                    return  # the link went meanwhile: the rest wait for the next birth
                self.history.ack(row.id)
            log.info("sparkplug: %d verdict(s) replayed as historical DDATA", len(rows))

    def _node_data(self) -> None:
        if not self.born:
            return
        values = tags.node_values(self.status(), self.session_bd)
        changed = {k: v for k, v in values.items() if self.sent_node.get(k) != v}
        if changed:
            self._publish("NDATA", spb.encode(tags.metrics(changed), self._next_seq()))
            self.sent_node = values

    def _tick(self, _) -> None:
        pass  # _node_data runs after every event

    def _message(self, item: tuple[str, bytes]) -> None:
        topic, data = item
        if topic == self.topics.state:
            self._host_state(data)
        elif topic == self.topics.of("NCMD"):
            try:
                metrics = spb.decode(data).metrics
            except Exception as exc:  # protobuf's DecodeError, or worse from hostile bytes
                log.warning("sparkplug: undecodable NCMD ignored: %s", printable(exc))
                return
            rebirth = tags.BY_NAME[tags.REBIRTH]
            if any((m.name == tags.REBIRTH or (not m.name and m.alias == rebirth.alias)) and spb.value_of(m) is True
                   for m in metrics):
                log.info("sparkplug: rebirth requested")
                self._rebirth(None)
        else:
            log.warning("sparkplug: command on %s ignored: the device has no writable metrics", printable(topic))

    def _host_state(self, data: bytes) -> None:
        if not data:
            return  # the retained state cleared (an empty retained message): nothing said about the host
        try:
            state = json.loads(data)
            online, stamp = state["online"], state["timestamp"]
            if not isinstance(online, bool) or not isinstance(stamp, int):
                raise TypeError("online must be a boolean and timestamp an integer")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("sparkplug: primary host STATE ignored: %s", printable(exc))
            return
        if stamp < self.host_ts:
            return  # older than one already seen: a stale retained state
        self.host_ts, self.host_online = stamp, online
        if online:
            self._birth_when_ready()
        elif self.born:  # not yet born (waiting for the host): nothing to take back
            log.warning("sparkplug: primary host %s offline: NDEATH, reconnecting to wait for it",
                        self.cfg.primary_host_id)
            self._death_and_disconnect(2.0)
            self._connect()

    def _death_and_disconnect(self, timeout: float) -> None:
        if self.session_bd is not None:
            info = self.client.publish(self.topics.of("NDEATH"), spb.death(self.session_bd), qos=1, retain=False)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass  # the link went meanwhile: the broker sends the will instead
        self.born = False
        self.client.disconnect()
        self.client.loop_stop()
        self._disconnected(None)

    def _stop(self, timeout: float) -> None:
        self._death_and_disconnect(timeout)
