"""The camera interface (open, grab, trigger, close, health) and reconnection with back-off.

A camera kind implements open/grab/close and raises CameraLost when the device goes away;
Reconnecting turns that into a logged state change and reopens with a doubling wait, so that an
unplugged camera never stops the service.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from edge_inspector.errors import UserError

log = logging.getLogger(__name__)


class CameraLost(Exception):
    """The device is gone or stopped answering; the wrapper reopens it."""


@dataclass
class Frame:
    image: np.ndarray | None  # BGR or mono uint8; None: the frame could not be read (see error)
    camera: str
    captured_at: float = field(default_factory=time.time)  # epoch seconds
    part_id: str | None = None
    triggered: bool = False  # a triggered part must get a verdict, so it is never dropped
    error: str | None = None
    source: str | None = None  # file name, for replays
    orphaned: bool = False  # no image will ever come: its trigger was accepted, then lost (error says how)


class Camera(ABC):
    name = "camera"
    triggered = False  # frames come only on trigger()

    @abstractmethod
    def open(self) -> None:
        """Connect and configure; raise CameraLost (retry later) or UserError (bad settings)."""

    @abstractmethod
    def grab(self, timeout: float) -> Frame | None:
        """The next frame, or None when none came within timeout (not an error in triggered mode)."""

    def trigger(self, part_id: str | None) -> None:
        raise UserError(f"camera {self.name} does not take software triggers")

    @abstractmethod
    def close(self) -> None: ...

    def take_orphan(self) -> Frame | None:
        """An error frame for a trigger accepted but lost with the device (its part still gets a
        verdict), or None. Called whether or not the device is open."""
        return None

    @property
    def exhausted(self) -> bool:
        """True when a finite source (a replay without loop) has delivered everything."""
        return False


class Reconnecting:
    """Wraps a camera: opens it, and after CameraLost reopens it with back-off, reporting state."""

    def __init__(self, camera: Camera, min_s: float, max_s: float, status=None):
        self.camera, self.min_s, self.max_s = camera, min_s, max_s
        self.status = status or (lambda **kw: None)
        self.connected, self.reconnects, self.last_error = False, 0, None
        self._wait, self._next_try = min_s, 0.0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.camera.name

    @property
    def triggered(self) -> bool:
        return self.camera.triggered

    @property
    def exhausted(self) -> bool:
        return self.camera.exhausted

    def health(self) -> dict:
        return {"camera": self.name, "connected": self.connected, "reconnects": self.reconnects,
                "last_error": self.last_error}

    def _lost(self, why: str) -> None:
        if self.connected:
            log.warning("camera %s lost: %s; reopening with back-off", self.name, why)
        elif why != self.last_error:  # missing at start, or failing anew: said once, not every retry
            log.warning("camera %s cannot be opened: %s; retrying with back-off", self.name, why)
        self.connected, self.last_error = False, why
        self.status(camera_connected=False, camera_error=why)
        try:
            self.camera.close()
        except Exception:  # closing a device that is gone may fail; it is gone either way
            pass
        self._next_try = time.monotonic() + self._wait
        self._wait = min(self._wait * 2, self.max_s)

    def ensure_open(self) -> bool:
        if self.connected:
            return True
        if time.monotonic() < self._next_try:
            return False
        try:
            self.camera.open()
        except CameraLost as exc:
            self._lost(str(exc))
            return False
        if self.last_error is not None:
            self.reconnects += 1
            log.info("camera %s reconnected", self.name)
        self.connected, self._wait = True, self.min_s
        self.status(camera_connected=True, camera_error=None, camera_reconnects=self.reconnects)
        return True

    def grab(self, timeout: float) -> Frame | None:
        orphan = self.camera.take_orphan()
        if orphan is not None:
            return orphan
        if not self.ensure_open():
            time.sleep(min(timeout, max(0.0, self._next_try - time.monotonic())))
            return None
        try:
            return self.camera.grab(timeout)
        except CameraLost as exc:
            self._lost(str(exc))
            return None

    def trigger(self, part_id: str | None) -> None:
        with self._lock:
            self.camera.trigger(part_id)

    def close(self) -> None:
        self.camera.close()
        self.connected = False
