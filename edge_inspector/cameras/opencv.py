"""cv2.VideoCapture: a device index, a video file, an RTSP / HTTP URL or a GStreamer pipeline."""

from __future__ import annotations

import re

import cv2

from edge_inspector.cameras.base import Camera, CameraLost, Frame


def redact(source: object) -> str:
    """A source as it may be shown (names, verdicts, status, logs): no user:password@ in URLs."""
    return re.sub(r"(?<=://)[^/@\s]*@", "***@", str(source))


class OpenCVCamera(Camera):
    def __init__(self, cfg):
        self.cfg = cfg
        self.name = cfg.name or f"opencv:{redact(cfg.source)}"
        self.cap: cv2.VideoCapture | None = None
        self.ended = False

    def open(self) -> None:
        source = self.cfg.source
        if isinstance(source, str) and source.isdigit():
            source = int(source)
        api = cv2.CAP_GSTREAMER if self.cfg.gstreamer else cv2.CAP_ANY
        cap = cv2.VideoCapture(source, api)
        if not cap.isOpened():
            cap.release()
            raise CameraLost(f"cannot open video source {redact(self.cfg.source)!r}")
        self.cap, self.ended = cap, False

    @property
    def exhausted(self) -> bool:
        return self.ended

    def grab(self, timeout: float) -> Frame | None:
        if self.cap is None:
            raise CameraLost("not open")
        ok, image = self.cap.read()  # blocks for at most the stream's own timeout
        if not ok:
            if self.cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:  # a file that has ended, not a lost stream
                self.ended = True
                return None
            raise CameraLost(f"video source {redact(self.cfg.source)!r} stopped delivering frames")
        return Frame(image, self.name)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
