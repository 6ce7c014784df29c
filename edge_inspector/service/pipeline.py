"""The line service: capture thread -> FrameQueue -> inference loop -> outbox -> MQTT.

Start: outbox and broker link, model loaded and warmed up, camera opened; then READY=1. The
inference loop sends WATCHDOG=1 as it goes round (its progress, not a timer). SIGTERM: stop
capturing, drain the queue (every captured frame gets its verdict), flush the outbox to the
broker (bounded wait; what is left stays on disk for the next start), publish "offline", exit 0.
No fault of a frame, a camera, a command or the broker stops the service: each is a log line,
a status change and, for a frame, an ERROR verdict.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from edge_inspector.cameras import open_camera
from edge_inspector.cameras.base import Frame
from edge_inspector.errors import ConfigError
from edge_inspector.inspection.frame import inspect_frame
from edge_inspector.inspection.postprocess import decide
from edge_inspector.service.archive import Archive
from edge_inspector.service.commands import printable
from edge_inspector.service.control import ServiceControl, cache_dir, load_model, state_dir
from edge_inspector.service.frame_queue import FrameQueue
from edge_inspector.service.metrics import Metrics
from edge_inspector.service.mqtt import MqttLink, Topics
from edge_inspector.service.notify import Notifier
from edge_inspector.service.outbox import Outbox
from edge_inspector.service.verdict import encode, mask_png, verdict_message

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0
STALL_S = 20.0  # a loop without progress this long stops the watchdog pings (WatchdogSec=30)


class LineService(ServiceControl):
    def __init__(self, cfg, echo=None, exit_when_done: bool = False):
        self.cfg, self.echo, self.exit_when_done = cfg, echo, exit_when_done
        self.stop_event = threading.Event()
        self.reload_lock = threading.Lock()
        self.reloader: threading.Thread | None = None
        self.reloaded = None  # (model, backend) loaded beside the running one, swapped in between frames
        self.capture_beat = time.monotonic()  # the capture loop's last round
        self.stalled: str | None = None
        self.state_lock = threading.Lock()
        self.state: dict = {"state": "starting", "camera_connected": False, "camera_error": None,
                            "broker_connected": False, "broker_error": None,
                            "broker_refusals": 0, "refused_pending": 0, "last_refusal": None}
        self.metrics = Metrics()
        self.notifier = Notifier(cfg.service.watchdog)
        root = state_dir(cfg)
        self.cache = cache_dir(cfg, root)
        self.outbox = Outbox(root / "outbox.sqlite3", int((cfg.mqtt.outbox_max_mb if cfg.mqtt else 1) * 2**20))
        self.archive = Archive(root / "archive", cfg.service.archive_max_items,
                               int(cfg.service.archive_max_mb * 2**20))
        self.queue = FrameQueue(cfg.service.queue_size)
        self.topics = Topics(cfg.mqtt.topic_prefix, cfg.station) if cfg.mqtt else None
        self.link = MqttLink(cfg.mqtt, cfg.station, self.outbox, self.on_command, self.set_state) if cfg.mqtt else None
        self.sparkplug = self.web = None
        if cfg.mqtt is not None and cfg.mqtt.sparkplug is not None:  # imported (protobuf too) only where on
            from edge_inspector.service.sparkplug.node import SparkplugNode
            self.sparkplug = SparkplugNode(cfg.mqtt, cfg.mqtt.sparkplug, cfg.station, root, self.live_status)
        if cfg.service.http is not None:  # imported only where the page is on
            from edge_inspector.service.web.server import WebServer
            self.web = WebServer(self, cfg.service.http)
        self.camera = open_camera(cfg.camera, self.set_state)
        self.model = self.backend = None
        self.counts = {"OK": 0, "NG": 0, "ERROR": 0}
        self.command_errors = 0

    # --- threads ---
    def _capture(self) -> None:
        while not self.stop_event.is_set():
            self.capture_beat = time.monotonic()
            frame = self.camera.grab(0.2)
            if frame is None:
                if self.camera.exhausted and self.exit_when_done and len(self.queue) == 0:
                    self.stop_event.set()
                continue
            self.metrics.frames.inc()
            if not self.queue.put(frame):
                self.metrics.drops.inc()
            self.metrics.queue_depth.set(len(self.queue))

    def process(self, queued_at: float, frame) -> dict:
        t0 = time.monotonic()
        decision, score, error, insp, result = None, None, frame.error, self.cfg.inspection, None
        if frame.orphaned:
            self.metrics.orphaned_triggers.inc()
            log.warning("part %s gets an ERROR verdict: %s", printable(frame.part_id), frame.error)
        elif frame.image is None:
            self.metrics.unreadable.inc()
            log.warning("unreadable frame from %s: %s", frame.camera, frame.error)
        else:
            try:
                result = inspect_frame(frame.image, self.backend.infer, self.model.input_size, insp)
                score = result.score
                t1 = time.monotonic()
                decision = decide(result.anomaly_map, score, self.threshold, self.pixel_threshold,
                                  self.cfg.threshold.min_defect_area, scale=result.scale, offset=result.roi[:2],
                                  extent=self.pixel_extent)
            except Exception as exc:  # a frame that breaks inspection must not break the line
                error = f"{type(exc).__name__}: {exc}"
                log.error("frame from %s could not be inspected: %s", frame.camera, error)
        t2 = time.monotonic()
        if decision is None:
            t1 = t2
        latency = {"queue": (t0 - queued_at) * 1000, "preprocess_and_inference": (t1 - t0) * 1000,
                   "postprocess": (t2 - t1) * 1000}
        verdict = decision.verdict if decision is not None else "ERROR"
        send_mask = self.cfg.mqtt is not None and decision is not None and (
            self.cfg.mqtt.publish_mask == "always" or (self.cfg.mqtt.publish_mask == "ng" and verdict == "NG"))
        # the mask at frame resolution only where it leaves the process
        mask = result.to_frame(decision.mask) if decision is not None and (send_mask or verdict == "NG") else None
        model = self.model_info()
        message = {}

        def make(seq: int):
            latency["total"] = (time.monotonic() - queued_at) * 1000
            message.update(verdict_message(self.outbox.epoch, seq, self.cfg.station, frame, decision, score,
                                           self.threshold, latency, model, insp.mode, error,
                                           self.topics.mask(seq) if send_mask else None))
            if self.topics is None:
                return []
            out = [(self.topics.verdict, encode(message), 1, False, "verdict")]
            if send_mask:
                out.append((self.topics.mask(seq), mask_png(mask), 1, False, "mask"))
            return out

        seq = self.outbox.add_verdict(make, answers_trigger=frame.triggered, part_id=frame.part_id)
        if self.link is not None:
            self.link.notify()
        t3 = time.monotonic()
        latency["publish"] = (t3 - t2) * 1000
        for stage, ms in latency.items():
            self.metrics.latency.labels(stage).observe(ms / 1000)
        self.metrics.verdicts.labels(verdict).inc()
        self.metrics.outbox_depth.set(self.outbox.depth())
        for kind, n in self.outbox.dropped.items():
            self.metrics.outbox_dropped.labels(kind).set(n)
        self.counts[verdict] += 1
        if self.sparkplug is not None:
            self.sparkplug.verdict(message)
        if self.web is not None:
            self.web.observe(frame.image, result if decision is not None else None, decision, message)
        if verdict == "NG":
            self.archive.add(self.outbox.epoch, seq, frame.image, mask)
        if self.echo:
            self.echo(message)
        return message

    def _install_signals(self) -> None:
        def stop(signum, _frame):
            log.info("%s: stopping (drain, flush, offline)", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self, install_signals: bool = True) -> int:
        if install_signals:
            self._install_signals()
        if self.cfg.service.metrics_port:
            self.metrics.serve(self.cfg.service.metrics_host, self.cfg.service.metrics_port)
        if self.link is not None:
            self.link.start()
        self.model, self.backend = load_model(self.cfg, self.cache)
        if self.sparkplug is not None:  # after the model: NBIRTH carries its version, hash and thresholds
            self.sparkplug.start()
        if self.web is not None:
            self.web.start()
        log.info("model %s on %s warm (threshold %.4f); verdict sequence continues after %d",
                 self.model.path, self.backend.name, self.threshold, self.outbox.last_seq())
        self.answer_orphaned_triggers("trigger accepted before the service stopped (crash, kill or power loss); "
                                      "its frame was never inspected")
        capture = threading.Thread(target=self._capture, name="capture", daemon=True)
        capture.start()
        # ready once the model is warm: a camera that is missing keeps the service up and says so
        # (status "camera-lost") instead of never reporting READY and being restarted in a loop
        self.set_state(state="running")
        self.notifier.ready(self.summary())
        while True:
            self.swap_reloaded()
            item = self.queue.get(0.2)
            self.feed_watchdog(capture)
            if item is not None:
                self.process(*item)
                self.metrics.queue_depth.set(len(self.queue))
            elif self.stop_event.is_set() and not capture.is_alive():
                break
            if self.stop_event.is_set() and capture.is_alive():
                capture.join(timeout=0.05)  # stops after its current grab; the queue drains after it
        return self.shutdown()

    def feed_watchdog(self, capture: threading.Thread) -> None:
        """WATCHDOG=1 only while capture, inference and the MQTT link all make progress: a thread
        that died or hangs stops the pings, and systemd restarts the service."""
        now = time.monotonic()
        stalled = None
        if not self.stop_event.is_set():  # stopping, capture ends on purpose while the queue drains
            if not capture.is_alive():
                stalled = "capture thread ended"
            elif now - self.capture_beat > STALL_S:
                stalled = f"capture thread stalled for over {STALL_S:.0f} s"
        if stalled is None and self.link is not None:
            stalled = self.link.stalled(STALL_S)
        if stalled != self.stalled:
            if stalled:
                log.error("watchdog withheld: %s", stalled)
            self.stalled = stalled
            self.set_state(stalled=stalled)
        if stalled is None:
            self.notifier.progress()

    def answer_orphaned_triggers(self, why: str) -> int:
        """An ERROR verdict, with its part id, for each accepted trigger whose frame will never be
        inspected: each accepted trigger ends in exactly one verdict."""
        orphans = self.outbox.open_triggers()
        for _, part_id, accepted_at in orphans:
            self.process(time.monotonic(), Frame(None, self.camera.name, captured_at=accepted_at, part_id=part_id,
                                                 triggered=True, error=why, orphaned=True))
        return len(orphans)

    def shutdown(self) -> int:
        self.notifier.stopping()
        self.set_state(state="stopping")
        self.camera.close()
        if self.model is not None:
            self.answer_orphaned_triggers("the service stopped before the frame of this trigger was grabbed")
        if self.link is not None:
            if not self.link.flush(FLUSH_TIMEOUT_S):
                log.warning("broker did not acknowledge %d message(s) in %.0f s; they stay in the outbox for the "
                            "next start", self.outbox.depth(), FLUSH_TIMEOUT_S)
            self.link.stop()
        if self.sparkplug is not None:
            self.sparkplug.stop()
        if self.web is not None:
            self.web.stop()
        self.outbox.close()
        self.metrics.close()
        log.info("stopped: %s", self.summary())
        return 0


def run_service(cfg, echo=None, exit_when_done: bool = False) -> int:
    if cfg.camera is None:
        raise ConfigError("camera: the line service needs a camera section (type folder, opencv or pylon)")
    return LineService(cfg, echo, exit_when_done).run()


def print_verdict(message: dict) -> None:
    regions = message["regions"]
    where = f", {len(regions)} region(s), largest {regions[0]['area']} px at {regions[0]['bbox']}" if regions else ""
    if message["verdict"] == "OK" and message["score"] is not None and message["score"] >= message["threshold"]:
        where += ", OK: no region reaches the pixel threshold at threshold.min_defect_area"  # the score alone is not NG
    score = "-" if message["score"] is None else f"{message['score']:.3f}"
    print(f"#{message['seq']} {message['verdict']} score {score} (threshold {message['threshold']:.3f}){where}"
          f" [{message['frame']['source'] or message['camera']}, {message['latency_ms']['total']:.0f} ms]"
          + (f" error: {message['error']}" if message["error"] else ""), flush=True)
