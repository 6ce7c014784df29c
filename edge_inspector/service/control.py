"""The line service's control: its state and status, the commands from the broker, and reload.

A mixin of LineService (service/pipeline.py), which owns the parts it reads: cfg, state, counts,
metrics, notifier, link, camera, queue, outbox, model, backend, cache and the reload slots.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from edge_inspector.calibration import store
from edge_inspector.calibration.store import model_path
from edge_inspector.errors import ConfigError, UserError
from edge_inspector.model.mask_cut import cut_levels
from edge_inspector.service.commands import BadCommand, parse, printable, request_id_of
from edge_inspector.service.verdict import encode

log = logging.getLogger(__name__)


def service_folder(configured: Path | None, systemd_variable: str, default: Path) -> Path:
    """The folder the station file names, else the one systemd gives (StateDirectory= sets
    $STATE_DIRECTORY, CacheDirectory= $CACHE_DIRECTORY), else default."""
    if configured is not None:
        return configured
    env = os.environ.get(systemd_variable)
    return Path(env.split(":")[0]) if env else default


def state_dir(cfg) -> Path:
    return service_folder(cfg.service.state_dir, "STATE_DIRECTORY", Path("state") / cfg.station)


def cache_dir(cfg, state: Path) -> Path:
    return service_folder(cfg.service.cache_dir, "CACHE_DIRECTORY", state / "cache")


def load_model(cfg, cache: Path):
    """The station's artefact loaded, its backend opened (graphs exported into cache) and warm."""
    from edge_inspector.model.kmdgan.artefact import load_artefact
    from edge_inspector.runtime import open_backend, precision_for

    if cfg.model.kind != "kmdgan":
        raise ConfigError("model.kind: the line service runs a trained KMDGAN artefact; set model.kind: kmdgan")
    path = model_path(cfg)  # the config's artefact, else the station's current calibration
    if not path.is_file():
        raise UserError(f"model artefact not found: {path} (run edge-inspector calibrate, or train and set "
                        "model.artefact)")
    model = load_artefact(path)
    graph = None
    if cfg.runtime.backend != "torch":
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"service.cache_dir {cache}: cannot create it ({exc.strerror})") from None
        precision = precision_for(cfg.runtime.backend, cfg.runtime.device, cfg.runtime.precision)
        graph = cache / f"{path.stem}-{str(model.meta.get('sha256'))[:16]}.{precision}.onnx"
    backend = open_backend(cfg.runtime.backend, model, cfg.runtime.device, onnx_path=graph,
                           precision=cfg.runtime.precision)
    backend.warmup(model.input_size)
    trained = (model.meta.get("inspection") or {}).get("mode", "resize")
    if trained != cfg.inspection.mode:  # runs, but its threshold was set for the other way of looking
        log.warning("model %s was trained for inspection.mode %s and the station inspects in %s: its threshold was "
                    "not set for this mode (calibrate or train again with this inspection section)", path.name,
                    trained, cfg.inspection.mode)
    return model, backend


class ServiceControl:
    # --- state and status ---
    def set_state(self, **changes) -> None:
        if "camera_connected" in changes:
            self.metrics.camera_connected.set(int(changes["camera_connected"]))
        if "broker_connected" in changes:
            self.metrics.broker_connected.set(int(changes["broker_connected"]))
        if changes.get("camera_reconnects", 0) > self.state.get("camera_reconnects", 0):
            self.metrics.camera_reconnects.inc()
        if "broker_refusals" in changes:
            self.metrics.refusals.set(changes["broker_refusals"])
        if "refused_pending" in changes:
            self.metrics.refused_pending.set(changes["refused_pending"])
        with self.state_lock:  # set from the capture, inference, paho and sender threads
            self.state.update(changes)
        if self.link is not None:
            self.link.set_availability(self.availability())
        if self.link is not None and self.link.connected.is_set():
            self.link.publish_detail(encode(self.status()))
        if self.state["state"] == "running":
            self.notifier.status(self.summary())

    def availability(self) -> str:
        """The retained status topic's value: "online" only while ready to inspect (docs/mqtt.md)."""
        state = self.state["state"]
        if state in ("starting", "stopping"):
            return state
        return "online" if self.state["camera_connected"] else "camera-lost"

    def summary(self) -> str:
        s = self.state
        cam = "camera ok" if s["camera_connected"] else f"camera down ({s['camera_error']})"
        broker = ("no broker" if self.link is None else "broker down" if not s["broker_connected"]
                  else f"broker refusing {s['refused_pending']} message(s)" if s["refused_pending"] else "broker ok")
        return f"{cam}; {broker}; verdicts OK {self.counts['OK']} NG {self.counts['NG']} ERROR {self.counts['ERROR']}"

    def status(self) -> dict:
        model = self.model
        with self.state_lock:
            state = dict(self.state)
        return {**state, "station": self.cfg.station, "camera": self.camera.health(),
                "queue_depth": len(self.queue), "outbox_depth": self.outbox.depth(),
                "last_seq": self.outbox.last_seq(), "dropped_frames": self.queue.dropped, "verdicts": dict(self.counts),
                "outbox_dropped": dict(self.outbox.dropped), "command_errors": self.command_errors,
                "epoch": self.outbox.epoch, "archive_write_failures": self.archive.failures,
                "model": None if model is None else self.model_info(), "time": time.time()}

    def live_status(self) -> dict:
        """status() with thresholds and availability: the Sparkplug node metrics, the page's status."""
        loaded = self.model is not None
        return {**self.status(), "availability": self.availability(), "broker_configured": self.link is not None,
                "threshold": self.threshold if loaded else None,
                "pixel_threshold": self.pixel_threshold if loaded else None}

    def model_info(self) -> dict:
        return {"version": self.model.meta.get("version"), "sha256": str(self.model.meta.get("sha256"))[:16],
                "artefact": Path(self.model.path).name if self.model.path else None, "backend": self.backend.name}

    @property
    def pixel_threshold(self) -> float:
        return cut_levels(self.cfg.threshold, self.model)[0]

    @property
    def pixel_extent(self) -> float | None:
        """The hysteresis level masks extend down to (None: a plain cut at the pixel threshold)."""
        return cut_levels(self.cfg.threshold, self.model)[1]

    @property
    def threshold(self) -> float:
        override = self.cfg.threshold.override
        return float(override) if override is not None else self.model.threshold

    # --- commands (paho's thread): quick, and never raise ---
    def on_command(self, payload: bytes) -> None:
        try:
            self._handle(payload)
        except Exception as exc:  # last line: nothing may escape into paho's network thread
            log.exception("command handling failed: %s", printable(exc))

    def _handle(self, payload: bytes) -> None:
        try:
            cmd = parse(payload)
        except BadCommand as exc:
            self.command_errors += 1
            log.warning("malformed command ignored: %s", printable(exc))
            self.reply(request_id_of(payload), None, error=str(exc))
            return
        try:
            if cmd.name == "trigger":
                self.reply(cmd.request_id, cmd.name, **self.trigger(cmd.part_id))
            elif cmd.name == "reload":
                self.reply(cmd.request_id, cmd.name, result={"reload": self.request_reload()})
            else:
                self.reply(cmd.request_id, cmd.name, result=self.status())
        except Exception as exc:  # a camera that refuses a trigger, for one
            log.warning("command %s failed: %s", cmd.name, printable(exc))
            self.reply(cmd.request_id, cmd.name, error=str(exc))

    def trigger(self, part_id: str | None) -> dict:
        """Accept a software trigger: durable before it is acknowledged, refused past the backlog."""
        if self.state["state"] != "running":
            return {"error": f"not ready to inspect: the service is {self.state['state']}"}
        limit = self.cfg.service.max_pending_triggers
        trigger_id = self.outbox.accept_trigger(part_id, limit)
        if trigger_id is None:
            self.metrics.refused_triggers.inc()
            return {"error": f"trigger backlog full: {limit} accepted triggers wait for their verdicts "
                             "(service.max_pending_triggers)"}
        try:
            self.camera.trigger(part_id)
        except Exception:
            self.outbox.withdraw_trigger(trigger_id)
            raise
        return {"result": {"part_id": part_id}}

    def reply(self, request_id, command, result=None, error=None) -> None:
        if self.link is not None:
            self.link.reply(encode({"request_id": request_id, "command": command, "ok": error is None,
                                    "result": result, "error": error}))

    def request_reload(self) -> str:
        """Load and warm the new model on a thread of its own, beside the running one; the inference
        loop swaps it in between two frames (swap_reloaded). Any failure keeps the running model."""
        with self.reload_lock:
            if self.reloader is not None and self.reloader.is_alive():
                return "already loading"
            self.reloader = threading.Thread(target=self._load_beside, name="reload", daemon=True)
            self.reloader.start()
        return "loading"

    def _load_beside(self) -> None:
        try:
            loaded = load_model(self.cfg, self.cache)
        except Exception as exc:  # whatever it is, the running model stays and the reason is said
            why = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            log.error("reload failed, the running model stays: %s", printable(why, 300))
            self.set_state(last_reload_error=why)
            return
        self.reloaded = loaded

    # --- threshold tuning from the commissioning page (its threads) ---
    def _tunable(self) -> None:
        if self.cfg.model.artefact is not None:
            raise UserError(f"model.artefact ({self.cfg.model.artefact}) fixes what this station runs; tuning writes "
                            "calibration versions: remove model.artefact to run the station's current calibration")
        if self.cfg.threshold.override is not None or self.cfg.threshold.pixel_threshold is not None:
            raise UserError("threshold.override / threshold.pixel_threshold in the station file fix the thresholds; "
                            "remove them to tune here")

    def retune(self, threshold: float, pixel_threshold: float, who: str, source: str) -> str:
        """A new calibration version with these thresholds, switched to and reloaded; said in the log."""
        self._tunable()
        before = (self.threshold, self.pixel_threshold)
        version = store.retune(store.station_folder(self.cfg), threshold, pixel_threshold, who, source)
        log.warning("thresholds changed by %s from %s: image %.4f -> %.4f, pixel %.3f -> %.3f; calibration version "
                    "%s (edge-inspector calibrate --rollback goes back)", who, source, before[0], threshold,
                    before[1], pixel_threshold, version.name)
        self.request_reload()
        return version.name

    def rollback_calibration(self, who: str, source: str) -> str:
        self._tunable()
        version = store.rollback(store.station_folder(self.cfg))
        log.warning("calibration rolled back by %s from %s to %s", who, source, version.name)
        self.request_reload()
        return version.name

    def swap_reloaded(self) -> None:
        loaded, self.reloaded = self.reloaded, None
        if loaded is None:
            return
        self.model, self.backend = loaded
        log.info("model reloaded: %s (threshold %.4f)", self.model.path, self.threshold)
        self.set_state(last_reload_error=None, reloaded_at=time.time())
