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


class FailingTrigger:
    """The real emulated camera, whose next software trigger fails as a flaky link's would."""

    def __init__(self, cam):
        self.cam, self.fail = cam, True

    def ExecuteSoftwareTrigger(self):
        from pypylon import genicam

        if self.fail:
            self.fail = False
            raise genicam.RuntimeException("trigger lost on the wire")
        self.cam.ExecuteSoftwareTrigger()

    def __getattr__(self, name):
        return getattr(self.cam, name)


def test_every_verdict_of_a_triggered_basler_camera_carries_its_own_part_id(tiny_kmdgan, replay_200, tmp_path):
    _, model = tiny_kmdgan
    camera = {"type": "pylon", "trigger": "software", "reconnect_min_s": 0.2, "timeout_ms": 2000,
              "features": {"TestImageSelector": "Off", "ImageFilename": str(replay_200), "ImageFileMode": "On"},
              "pixel_format": "Mono8"}
    service = LineService(load_config(station(tmp_path, model, camera, None)))
    seen = []
    service.echo = seen.append
    runner = start(service)

    def trigger(part_id):
        service.on_command(f'{{"command": "trigger", "part_id": "{part_id}"}}'.encode())

    def wait_for(n, timeout=30):
        deadline = time.monotonic() + timeout
        while len(seen) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(seen) >= n, [v["part_id"] for v in seen]

    try:
        deadline = time.monotonic() + 60
        while not service.state["camera_connected"] and time.monotonic() < deadline:
            time.sleep(0.1)
        for i in range(3):
            trigger(f"P{i}")
            wait_for(i + 1)
        # a trigger that fails after its id was queued: refused, and its id must not go to the next image
        pylon_camera = service.camera.camera
        pylon_camera.cam = FailingTrigger(pylon_camera.cam)
        trigger("P-failed")
        assert service.command_errors == 0 and not pylon_camera.pending
        trigger("P3")
        wait_for(4)
        # a camera lost with a trigger outstanding: that part gets exactly one verdict, and the
        # parts triggered after the reconnect get their own ids
        trigger("P-lost")
        pylon_camera.cam.DestroyDevice()
        deadline = time.monotonic() + 30
        while service.camera.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.camera.reconnects >= 1
        wait_for(5)
        trigger("P4")
        wait_for(6)
    finally:
        service.stop_event.set()
        runner.join(60)
    ids = [v["part_id"] for v in seen]
    assert ids == ["P0", "P1", "P2", "P3", "P-lost", "P4"], ids
    assert all(v["verdict"] != "ERROR" for v in seen if v["part_id"] != "P-lost")
    lost = seen[4]
    assert lost["verdict"] != "ERROR" or "camera lost before the image" in lost["error"]


class SkippingCamera:
    """What the emulator cannot do: deliver an image after skipping one (a lost frame)."""

    class Result:
        def IsValid(self):
            return True

        def GetNumberOfSkippedImages(self):
            return 1

        def GrabSucceeded(self):
            return False  # keeps the pixel converter out of it; the part id matching is the point

        def GetErrorDescription(self):
            return "incomplete"

        def Release(self):
            pass

    def IsCameraDeviceRemoved(self):
        return False

    def IsGrabbing(self):
        return True

    def RetrieveResult(self, *args):
        return self.Result()


def test_a_skipped_image_costs_its_own_part_an_error_verdict_not_the_next_part_its_id():
    from edge_inspector.cameras.pylon import PylonCamera
    from edge_inspector.config import StationConfig

    cfg = StationConfig.model_validate({"station": "s", "model": {"kind": "kmdgan"},
                                        "camera": {"type": "pylon", "trigger": "software"}}).camera
    camera = PylonCamera(cfg)
    camera.cam = SkippingCamera()
    camera.pending = ["A", "B", "C"]
    frame = camera.grab(0.1)
    assert frame.part_id == "B"  # A's image was the one skipped
    orphan = camera.take_orphan()
    assert orphan.part_id == "A" and orphan.orphaned and "skipped 1 image" in orphan.error
    assert camera.pending == ["C"] and camera.take_orphan() is None
