"""Basler cameras through pypylon: chosen by serial number or user-defined name, free-run (latest
image) or triggered (software or hardware line), exposure / gain / pixel format / ROI from the
config, frames converted to BGR or mono. Any pylon error while grabbing counts as a lost camera,
which the Reconnecting wrapper reopens with back-off. Triggered images are matched to part ids in
trigger order; where the camera counts images it skipped, their part ids get ERROR verdicts.
"""

from __future__ import annotations

import threading

import numpy as np

from edge_inspector.cameras.base import Camera, CameraLost, Frame
from edge_inspector.errors import UserError

try:
    from pypylon import genicam, pylon
except ImportError as exc:  # pragma: no cover - pypylon is a dependency; this keeps the error one line
    pylon = None
    IMPORT_ERROR = str(exc)


def describe(exc: Exception) -> str:
    """pylon's own description of an error where it has one (pylon raises), else its text."""
    return exc.GetDescription() if hasattr(exc, "GetDescription") else str(exc)


def _set(cam, name: str, value) -> None:
    """Set a camera feature, failing with one line that names it; SFNC 1 names are tried as well."""
    for node_name in (name, {"ExposureTime": "ExposureTimeAbs", "Gain": "GainAbs"}.get(name)):
        if node_name is None:
            continue
        node = cam.GetNodeMap().GetNode(node_name)
        if node is not None and genicam.IsWritable(node):
            try:
                getattr(cam, node_name).Value = value
                return
            except genicam.GenericException as exc:
                raise UserError(f"camera.{name}: {value!r} refused by the camera: {describe(exc)}") from None
    raise UserError(f"camera.{name}: this camera has no writable {name} feature")


class PylonCamera(Camera):
    def __init__(self, cfg):
        if pylon is None:
            raise UserError(f"camera type pylon unavailable: {IMPORT_ERROR}")
        self.cfg = cfg
        self.name = cfg.name or f"pylon:{cfg.serial or cfg.user_name or 'first'}"
        self.triggered = cfg.trigger != "free-run"
        self.cam = None
        self.converter = pylon.ImageFormatConverter()
        self.converter.OutputPixelFormat = pylon.PixelType_Mono8 if cfg.output == "mono" else pylon.PixelType_BGR8packed
        self.pending: list[str | None] = []  # part ids of software triggers not yet matched to an image
        # part ids whose trigger was accepted but whose image was lost with the camera: each comes
        # back from grab() as an error frame, so that it gets exactly one (ERROR) verdict
        self.orphans: list[tuple[str | None, str]] = []
        self.lock = threading.Lock()

    def _device(self):
        factory = pylon.TlFactory.GetInstance()
        devices = factory.EnumerateDevices()
        for d in devices:
            if (self.cfg.serial is None or d.GetSerialNumber() == self.cfg.serial) and \
               (self.cfg.user_name is None or d.GetUserDefinedName() == self.cfg.user_name):
                return factory.CreateDevice(d)
        wanted = self.cfg.serial or self.cfg.user_name or "any camera"
        raise CameraLost(f"Basler camera {wanted} not found ({len(devices)} camera(s) present)")

    def open(self) -> None:
        try:
            cam = pylon.InstantCamera(self._device())
            cam.Open()
        except genicam.GenericException as exc:
            raise CameraLost(f"cannot open Basler camera: {describe(exc)}") from None
        cfg = self.cfg
        for name, value in cfg.features.items():
            _set(cam, name, value)
        if cfg.pixel_format:
            _set(cam, "PixelFormat", cfg.pixel_format)
        if cfg.roi:
            x, y, w, h = cfg.roi
            _set(cam, "OffsetX", 0), _set(cam, "OffsetY", 0)  # offsets first would be clipped by the old size
            _set(cam, "Width", w), _set(cam, "Height", h), _set(cam, "OffsetX", x), _set(cam, "OffsetY", y)
        if cfg.exposure_us is not None:
            _set(cam, "ExposureTime", cfg.exposure_us)
        if cfg.gain_db is not None:
            _set(cam, "Gain", cfg.gain_db)
        _set(cam, "TriggerSelector", "FrameStart")
        if self.triggered:
            _set(cam, "TriggerMode", "On")
            _set(cam, "TriggerSource", "Software" if cfg.trigger == "software" else cfg.trigger_line)
        else:
            _set(cam, "TriggerMode", "Off")
        # free-run: only the newest image matters; triggered: every image is a part, none may be skipped
        cam.StartGrabbing(pylon.GrabStrategy_OneByOne if self.triggered else pylon.GrabStrategy_LatestImageOnly)
        self._orphan_pending("camera reopened before the image of its trigger came")
        self.cam = cam

    def _orphan_pending(self, why: str) -> None:
        with self.lock:
            self.orphans += [(part_id, why) for part_id in self.pending]
            self.pending.clear()

    def trigger(self, part_id: str | None) -> None:
        if self.cfg.trigger != "software":
            raise UserError(f"camera {self.name} is in {self.cfg.trigger} mode; software triggers are not used")
        if self.cam is None:
            raise CameraLost("camera not open")
        try:
            self.cam.WaitForFrameTriggerReady(self.cfg.timeout_ms, pylon.TimeoutHandling_ThrowException)
        except genicam.GenericException as exc:
            raise CameraLost(f"camera not ready for a trigger: {describe(exc)}") from None
        with self.lock:
            self.pending.append(part_id)
        try:
            self.cam.ExecuteSoftwareTrigger()
        except genicam.GenericException as exc:
            with self.lock:  # no image will come for this one: its id must not be matched to the next
                self.pending.pop()
            raise CameraLost(f"software trigger failed: {describe(exc)}") from None

    def take_orphan(self) -> Frame | None:
        with self.lock:
            if not self.orphans:
                return None
            part_id, why = self.orphans.pop(0)
        return Frame(None, self.name, part_id=part_id, triggered=True, error=why, orphaned=True)

    def grab(self, timeout: float) -> Frame | None:
        if self.cam is None:
            raise CameraLost("camera not open")
        wait_ms = int(timeout * 1000) if self.triggered else self.cfg.timeout_ms
        try:
            if self.cam.IsCameraDeviceRemoved() or not self.cam.IsGrabbing():
                raise CameraLost("camera removed")
            result = self.cam.RetrieveResult(wait_ms, pylon.TimeoutHandling_Return)
        except genicam.GenericException as exc:
            raise CameraLost(describe(exc)) from None
        if result is None or not result.IsValid():
            if self.triggered:
                return None  # no trigger came: not a fault
            raise CameraLost(f"no image within {self.cfg.timeout_ms} ms")
        try:
            # the camera's own count of images it skipped before this one (its frame counter):
            # the triggers of those images get ERROR verdicts instead of this image's verdict
            skipped = result.GetNumberOfSkippedImages() if self.triggered else 0
            part_id = None
            with self.lock:
                for _ in range(min(skipped, max(len(self.pending) - 1, 0))):
                    self.orphans.append((self.pending.pop(0), f"its image was lost: the camera skipped {skipped} "
                                                              "image(s) before the next one"))
                if self.pending:
                    part_id = self.pending.pop(0)
            if not result.GrabSucceeded():
                return Frame(None, self.name, part_id=part_id, triggered=self.triggered,
                             error=f"grab failed: {result.GetErrorDescription()}")
            image = np.array(self.converter.Convert(result).GetArray(), copy=True)
            return Frame(image, self.name, part_id=part_id, triggered=self.triggered)
        finally:
            result.Release()

    def close(self) -> None:
        self._orphan_pending("camera lost before the image of its trigger came")
        if self.cam is not None:
            try:
                if self.cam.IsGrabbing():
                    self.cam.StopGrabbing()
                self.cam.Close()
            finally:
                self.cam = None
