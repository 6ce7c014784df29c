"""The pylon camera with the pylon emulator (PYLON_CAMEMU, set in conftest) replaying real image
files: no broker needed."""

import time

from edge_inspector.config import load_config
from edge_inspector.service.pipeline import LineService
from tests.service_helpers import start, station


def test_an_emulated_basler_camera_that_disappears_is_reopened(tiny_kmdgan, replay_200, tmp_path, caplog):
    _, model = tiny_kmdgan
    camera = {"type": "pylon", "trigger": "free-run", "reconnect_min_s": 0.2, "timeout_ms": 2000,
              "features": {"TestImageSelector": "Off", "ImageFilename": str(replay_200), "ImageFileMode": "On",
                           "AcquisitionFrameRateEnable": True, "AcquisitionFrameRate": 20.0},
              "pixel_format": "Mono8"}
    cfg = load_config(station(tmp_path, model, camera, None))
    service = LineService(cfg)
    seen = []
    service.echo = seen.append
    runner = start(service)
    try:
        deadline = time.monotonic() + 60
        while len(seen) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(seen) >= 5 and seen[0]["frame"]["width"] == 128  # the replayed images, not a test pattern
        service.camera.camera.cam.DestroyDevice()  # as if unplugged
        deadline = time.monotonic() + 30
        while service.camera.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        count = len(seen)
        deadline = time.monotonic() + 30
        while len(seen) < count + 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.camera.reconnects >= 1 and len(seen) >= count + 5
        assert any("lost" in r.message for r in caplog.records)
    finally:
        service.stop_event.set()
        runner.join(60)
