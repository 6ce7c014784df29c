"""What the service says about itself is true: "online" only while it can inspect, READY once the
model is warm even with the camera missing (said once, in the log and the status), and the
systemd watchdog fed only while every loop makes progress."""

import json
import logging
import time

from edge_inspector.config import load_config
from edge_inspector.service import pipeline
from edge_inspector.service.pipeline import LineService
from tests.mqtt_helpers import Broker, Collector, needs_mosquitto
from tests.mqtt_helpers import wait_until as wait
from tests.service_helpers import NotifySocket, start, station


@needs_mosquitto
def test_a_missing_camera_is_said_once_and_the_service_is_ready_without_it(tiny_kmdgan, tmp_path, monkeypatch,
                                                                         caplog):
    caplog.set_level(logging.INFO)
    _, model = tiny_kmdgan
    notify = NotifySocket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    camera = {"type": "pylon", "serial": "00000000", "trigger": "software", "reconnect_min_s": 0.1,
              "reconnect_max_s": 0.2}
    with Broker(tmp_path / "broker") as broker:
        collector = Collector(broker.port, "edge-inspector/st1/#")
        service = LineService(load_config(station(tmp_path, model, camera, broker.port)))
        runner = start(service)
        try:
            assert wait(lambda: any(m.startswith("READY=1") for m in notify.messages))
            assert collector.wait(lambda c: c.on("/status")[-1:] == [b"camera-lost"], 30)
            assert b"online" not in collector.on("/status")  # never said while it cannot inspect
            time.sleep(1.5)  # a dozen retries meanwhile
            collector.client.publish("edge-inspector/st1/command",
                                     json.dumps({"command": "trigger", "part_id": "P1", "request_id": "t1"}), qos=1)
            assert collector.wait(lambda c: c.on("/reply"), 30)
            reply = json.loads(collector.on("/reply")[-1])
            assert reply["ok"] is False and "not open" in reply["error"]
        finally:
            service.stop_event.set()
            runner.join(60)
            collector.close()
            notify.done.set()
    said = [r.getMessage() for r in caplog.records if "cannot be opened" in r.getMessage()]
    assert len(said) == 1 and "00000000 not found" in said[0]
    assert service.state["camera_error"] and "not found" in service.state["camera_error"]


def test_the_watchdog_stops_when_the_capture_loop_hangs(tiny_kmdgan, replay_200, tmp_path, monkeypatch, caplog):
    _, model = tiny_kmdgan
    notify = NotifySocket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "300000")  # a ping every 0.1 s while healthy
    monkeypatch.setattr(pipeline, "STALL_S", 1.0)
    service = LineService(load_config(station(tmp_path, model, {"type": "folder", "path": str(replay_200),
                                                                 "trigger": "software"}, None)))
    runner = start(service)
    hang = []
    try:
        assert wait(lambda: "WATCHDOG=1" in notify.messages)
        real_grab = service.camera.grab

        def hung_grab(timeout):  # a driver call that never returns
            hang.append(1)
            while not service.stop_event.is_set():
                time.sleep(0.05)
            return real_grab(timeout)

        service.camera.grab = hung_grab
        assert wait(lambda: service.state.get("stalled"), 10)
        pings_then = notify.messages.count("WATCHDOG=1")
        time.sleep(1.0)
        assert notify.messages.count("WATCHDOG=1") == pings_then  # withheld: systemd would restart it
        assert "capture thread stalled" in service.state["stalled"]
    finally:
        service.stop_event.set()
        runner.join(60)
        notify.done.set()
    assert hang and any("watchdog withheld" in r.getMessage() for r in caplog.records)


def test_a_failed_reload_keeps_the_running_model_and_says_why(tiny_kmdgan, replay_200, tmp_path):
    _, model = tiny_kmdgan
    artefact = tmp_path / "model.safetensors"
    artefact.write_bytes(model.path.read_bytes())
    path = station(tmp_path, model, {"type": "folder", "path": str(replay_200), "trigger": "software"}, None)
    cfg = load_config(path)
    cfg.model.artefact = artefact
    service = LineService(cfg)
    seen = []
    service.echo = seen.append
    runner = start(service)
    try:
        assert wait(lambda: service.state["state"] == "running" and service.state["camera_connected"], 60)
        running = service.model
        artefact.write_bytes(b"half a file")  # a recalibration gone wrong
        service.on_command(b'{"command": "reload"}')
        assert wait(lambda: service.state.get("last_reload_error"), 30)
        assert "corrupt" in service.state["last_reload_error"] and service.model is running
        service.on_command(b'{"command": "trigger", "part_id": "after"}')
        assert wait(lambda: seen, 30)
        assert seen[0]["part_id"] == "after" and seen[0]["verdict"] != "ERROR"
    finally:
        service.stop_event.set()
        runner.join(60)
