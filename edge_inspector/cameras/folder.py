"""Replay of image files at a set rate: demos, tests and re-inspection of archived parts."""

from __future__ import annotations

import queue
import time

import cv2

from edge_inspector.cameras.base import Camera, CameraLost, Frame
from edge_inspector.data.folder import list_images


class FolderCamera(Camera):
    def __init__(self, cfg):
        self.cfg = cfg
        self.name = cfg.name or f"folder:{cfg.path.name}"
        self.triggered = cfg.trigger == "software"
        self.files: list = []
        self.pos = 0
        self.next_at = 0.0
        self.triggers: queue.Queue = queue.Queue()

    def open(self) -> None:
        if not self.cfg.path.is_dir():
            raise CameraLost(f"replay folder not found: {self.cfg.path}")
        self.files = list_images(self.cfg.path)
        if not self.files:
            raise CameraLost(f"no images in replay folder {self.cfg.path}")
        self.next_at = time.monotonic()

    @property
    def exhausted(self) -> bool:
        return bool(self.files) and self.pos >= len(self.files) and not self.cfg.loop

    def trigger(self, part_id: str | None) -> None:
        self.triggers.put(part_id)

    def _read(self, part_id: str | None = None) -> Frame | None:
        if self.pos >= len(self.files):
            if not self.cfg.loop:
                return None
            self.pos = 0
        path = self.files[self.pos]
        self.pos += 1
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is not None and image.dtype != "uint8":
            image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
        error = None if image is not None else f"unreadable image file {path}"
        return Frame(image, self.name, part_id=part_id, triggered=self.triggered, error=error, source=path.name)

    def grab(self, timeout: float) -> Frame | None:
        if self.triggered:
            try:
                part_id = self.triggers.get(timeout=timeout)
            except queue.Empty:
                return None
            return self._read(part_id)
        if self.exhausted:
            time.sleep(timeout)
            return None
        wait = self.next_at - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, wait))
        self.next_at = max(self.next_at + 1.0 / self.cfg.fps, time.monotonic() - 1.0)
        return self._read()

    def close(self) -> None:
        pass
