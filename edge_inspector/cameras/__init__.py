"""Camera sources behind one small interface (cameras.base.Camera), one module per kind."""

from __future__ import annotations

from edge_inspector.cameras.base import Camera, CameraLost, Frame, Reconnecting


def open_camera(cfg, status=None) -> Reconnecting:
    """The configured camera wrapped in reconnection with back-off (not yet opened)."""
    if cfg.type == "folder":
        from edge_inspector.cameras.folder import FolderCamera

        raw: Camera = FolderCamera(cfg)
    elif cfg.type == "opencv":
        from edge_inspector.cameras.opencv import OpenCVCamera

        raw = OpenCVCamera(cfg)
    else:
        from edge_inspector.cameras.pylon import PylonCamera

        raw = PylonCamera(cfg)
    return Reconnecting(raw, cfg.reconnect_min_s, cfg.reconnect_max_s, status)


__all__ = ["Camera", "CameraLost", "Frame", "Reconnecting", "open_camera"]
