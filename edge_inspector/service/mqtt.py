"""MQTT link (paho-mqtt 2.x, VERSION2 callbacks): drains the outbox to the broker at QoS 1 and
removes a message only on a successful PUBACK; a retained status topic ("online" on connect,
"offline" as the last will and on a clean stop); commands in, replies out.

A PUBACK with a failure reason code (MQTT 5: 0x87 not authorised, 0x97 quota exceeded, ...) is a
refusal: the message stays in the outbox, is counted, and is sent again with back-off (1 s
doubling to 60 s) until the broker takes it. With MQTT 3.1.1 a broker acknowledges a publish it
denies, so refusals can only be seen with MQTT 5.

Topics, under <prefix>/<station>/: status (retained "online"/"offline"), status/detail (retained
JSON), verdict (JSON, QoS 1), mask/<seq> (PNG, QoS 1), command (in), reply (out). See docs/mqtt.md.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_inspector.errors import UserError
from edge_inspector.service.outbox import Outbox

log = logging.getLogger(__name__)

WINDOW = 50  # messages in flight at once: enough to keep a LAN link busy, few to resend
RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0  # back-off after a refusal


class Topics:
    def __init__(self, prefix: str, station: str):
        base = f"{prefix.rstrip('/')}/{station}"
        self.status, self.detail = f"{base}/status", f"{base}/status/detail"
        self.verdict, self.command, self.reply = f"{base}/verdict", f"{base}/command", f"{base}/reply"
        self.mask_prefix = f"{base}/mask"

    def mask(self, seq: int) -> str:
        return f"{self.mask_prefix}/{seq}"


def new_client(cfg, client_id: str) -> mqtt.Client:
    """A paho client for the station's broker (protocol, credentials, TLS), before its will and
    callbacks; with a clean session, as the JSON link and the Sparkplug node both want."""
    protocol = mqtt.MQTTv5 if cfg.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                         clean_session=None if protocol == mqtt.MQTTv5 else True)
    client.suppress_exceptions = True  # a callback's bug is logged, never kills the network thread
    client.reconnect_delay_set(1, 30)
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password())
    tls = cfg.tls
    if tls:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path is not None and not path.is_file():
                raise UserError(f"mqtt.tls.{key} {path}: not found")
        try:
            client.tls_set(ca_certs=tls.ca_file and str(tls.ca_file), certfile=tls.cert_file and str(tls.cert_file),
                           keyfile=tls.key_file and str(tls.key_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise UserError(f"mqtt.tls: cannot use the certificate files: {exc}") from None
    return client


class MqttLink:
    def __init__(self, cfg, station: str, outbox: Outbox, on_command: Callable[[bytes], None] | None = None,
                 status: Callable[..., None] | None = None):
        self.cfg, self.outbox = cfg, outbox
        self.topics = Topics(cfg.topic_prefix, station)
        self.on_command = on_command or (lambda payload: None)
        self.status = status or (lambda **kw: None)
        self.connected = threading.Event()
        self.wake = threading.Event()
        self.acks: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.error: str | None = None
        self.refusals = 0  # PUBACKs with a failure reason code, ever
        self.refused: set[int] = set()  # outbox ids refused and not yet taken
        self.last_refusal: str | None = None
        self.client = new_client(cfg, cfg.client_id or f"edge-inspector-{station}")
        self.client.max_inflight_messages_set(WINDOW)
        self.client.will_set(self.topics.status, b"offline", qos=1, retain=True)
        self.availability = "starting"  # what the retained status topic says (docs/mqtt.md)
        self.beat = time.monotonic()  # the sender loop's last round
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.sender = threading.Thread(target=self._send_loop, name="mqtt-outbox", daemon=True)

    # --- callbacks (paho's network thread) ---
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            why = f"broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason_code}"
            if why != self.error:
                log.error("%s (check mqtt.username and the password source)", why)
            self.error = why
            self.status(broker_connected=False, broker_error=why)
            return
        if self.error:
            log.info("broker %s:%d connected again", self.cfg.host, self.cfg.port)
        else:
            log.info("broker %s:%d connected", self.cfg.host, self.cfg.port)
        self.error = None
        client.publish(self.topics.status, self.availability.encode(), qos=1, retain=True)
        client.subscribe(self.topics.command, qos=1)
        self.connected.set()
        self.acks.put(None)  # tells the sender to resend everything unacknowledged
        self.wake.set()
        self.status(broker_connected=True, broker_error=None)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if not self.stopping.is_set():
            why = f"broker {self.cfg.host}:{self.cfg.port} connection lost: {reason_code}"
            if was:
                log.warning("%s; verdicts wait in the outbox", why)
            self.error = self.error or why
            self.status(broker_connected=False, broker_error=self.error)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acks.put((mid, reason_code))  # handled by the sender thread, which owns the mid map
        self.wake.set()

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == self.topics.command:
            try:
                self.on_command(message.payload)
            except Exception:  # on_command never raises; should it, the link must survive
                log.exception("command handler raised")

    # --- the sender thread ---
    def _refused(self, row: int, reason) -> None:
        self.refusals += 1
        why = f"broker refused {self.topic_of(row)}: {reason}"
        if why != self.last_refusal:  # once per cause, not once per message and retry
            log.error("%s; refused messages stay in the outbox and are retried with back-off", why)
        self.refused.add(row)
        self.last_refusal = why
        self.status(broker_refusals=self.refusals, refused_pending=len(self.refused), last_refusal=why)

    def _taken(self, row: int) -> None:
        self.outbox.ack(row)
        if row in self.refused:
            self.refused.discard(row)
            if not self.refused:
                log.info("broker took every refused message again; refusal alarm cleared")
                self.last_refusal = None
            self.status(refused_pending=len(self.refused), last_refusal=self.last_refusal)

    def topic_of(self, row: int) -> str:
        msg = self.outbox.get(row)
        return msg.topic if msg else "?"

    def _send_loop(self) -> None:
        inflight: dict[int, int] = {}  # paho mid -> outbox id
        cursor = 0
        backoff, retry_at = RETRY_MIN_S, 0.0
        while not (self.stopping.is_set() and not self.connected.is_set()):
            self.beat = time.monotonic()
            self.wake.wait(0.2)
            self.wake.clear()
            while True:
                try:
                    item = self.acks.get_nowait()
                except queue.Empty:
                    break
                if item is None:  # (re)connected: what paho had in flight may be gone with the session
                    inflight.clear()
                    cursor = 0
                    continue
                mid, reason = item
                row = inflight.pop(mid, None)
                if row is None:
                    continue
                if reason.is_failure:
                    self._refused(row, reason)
                    retry_at = max(retry_at, time.monotonic() + backoff)  # one schedule per retry round
                else:
                    self._taken(row)
                    if not self.refused:
                        backoff = RETRY_MIN_S
            if not self.connected.is_set():
                if self.stopping.is_set():
                    return
                continue
            room = WINDOW - len(inflight)
            if room <= 0:
                continue
            if self.refused and time.monotonic() >= retry_at:
                waiting = set(inflight.values())
                for row in sorted(self.refused - waiting)[:room]:
                    msg = self.outbox.get(row)
                    if msg is None:  # dropped by the outbox's bound meanwhile (counted there)
                        self.refused.discard(row)
                    elif not self._send(msg, inflight):
                        break
                backoff = min(backoff * 2, RETRY_MAX_S)  # the next round, if this one is refused too
                retry_at = time.monotonic() + backoff
                room = WINDOW - len(inflight)
            for msg in self.outbox.pending(cursor, room):
                if msg.id not in self.refused and not self._send(msg, inflight):
                    break  # a refused one waits for its retry
                cursor = msg.id

    def _send(self, msg, inflight: dict[int, int]) -> bool:
        info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # disconnected meanwhile: resent after the next connect
        inflight[info.mid] = msg.id
        return True

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()
        self.sender.start()

    def set_availability(self, value: str) -> None:
        """starting | online | camera-lost | stopping; published retained when it changes."""
        if value == self.availability:
            return
        self.availability = value
        if self.connected.is_set():
            self.client.publish(self.topics.status, value.encode(), qos=1, retain=True)

    def stalled(self, limit_s: float) -> str | None:
        """Why the link makes no progress (a dead thread, a sender stuck), or None."""
        if not self.sender.is_alive():
            return "MQTT sender thread ended"
        if time.monotonic() - self.beat > limit_s:
            return f"MQTT sender thread stalled for over {limit_s:.0f} s"
        network = getattr(self.client, "_thread", None)  # paho's loop_start thread
        if network is not None and not network.is_alive():
            return "MQTT network thread ended"
        return None

    def notify(self) -> None:
        """New messages are in the outbox."""
        self.wake.set()

    def reply(self, payload: bytes) -> None:
        if self.connected.is_set():
            self.client.publish(self.topics.reply, payload, qos=1)

    def publish_detail(self, payload: bytes) -> None:
        if self.connected.is_set():
            self.client.publish(self.topics.detail, payload, qos=1, retain=True)

    def flush(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything in the outbox (True) or timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.outbox.depth() == 0:
                return True
            self.wake.set()
            time.sleep(0.05)
        return self.outbox.depth() == 0

    def stop(self, timeout: float = 5.0) -> None:
        """Publish "offline" (retained) where connected, then disconnect; the outbox keeps the rest."""
        if self.connected.is_set():
            info = self.client.publish(self.topics.status, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass  # lost the link meanwhile: the last will says "offline" instead
        self.stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self.wake.set()
        self.sender.join(timeout)
