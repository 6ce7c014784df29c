"""The line service with real parts: a Mosquitto broker of the test's own, the replay and pylon
emulator cameras, a trained tiny KMDGAN. No verdict may be lost: not while the broker is down,
not across a restart of the service, not on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

from edge_inspector.config import load_config
from edge_inspector.service.pipeline import LineService
from tests.mqtt_helpers import Broker, Collector, first_seen_order, needs_mosquitto
from tests.service_helpers import NotifySocket, start, station, triggered_station_online

pytestmark = needs_mosquitto


def contiguous(seqs: list[int]) -> bool:
    return bool(seqs) and sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1))


def test_no_verdict_is_lost_while_the_broker_is_down(tiny_kmdgan, replay_200, tmp_path):
    _, model = tiny_kmdgan
    broker = Broker(tmp_path / "broker").start()
    collector = Collector(broker.port, "edge-inspector/st1/#")
    try:
        assert collector.wait(lambda c: c.client.is_connected(), 10)
        cfg = load_config(station(tmp_path, model, {"type": "folder", "path": str(replay_200), "fps": 40},
                                  broker.port))
        service = LineService(cfg, exit_when_done=True)
        runner = start(service)
        assert collector.wait(lambda c: len(c.verdicts()) >= 40, 60)
        broker.stop()  # killed in the middle of the run...
        down_at = service.outbox.last_seq()
        time.sleep(4)
        assert service.outbox.last_seq() > down_at  # ...while verdicts kept coming, into the outbox
        broker.start()  # ...and back
        runner.join(120)
        assert not runner.is_alive()
        last = 200
        assert collector.wait(lambda c: {v["seq"] for v in c.verdicts()} >= set(range(1, last + 1)), 30)
        seqs = [v["seq"] for v in collector.verdicts()]
        assert contiguous(seqs) and max(seqs) == last
        assert first_seen_order(seqs) == sorted(set(seqs))  # in sequence order after de-duplication
        ng = [v for v in collector.verdicts() if v["verdict"] == "NG"]
        assert ng and all(v["mask_topic"] for v in ng)
        masks = [t for t, _ in collector.messages if "/mask/" in t]
        assert {f"edge-inspector/st1/mask/{v['seq']}" for v in ng} <= set(masks)
        assert collector.on("/status")[-1] == b"offline"
        v = collector.verdicts()[0]
        assert v["schema"] == "edge-inspector.verdict/1" and set(v["latency_ms"]) >= {"queue", "total"}
    finally:
        collector.close()
        broker.stop()


def test_commands_bad_ones_are_answered_and_change_nothing(tiny_kmdgan, replay_200, tmp_path):
    _, model = tiny_kmdgan
    with Broker(tmp_path / "broker") as broker, \
            triggered_station_online(tmp_path, model, replay_200, broker) as (service, collector):
        send = lambda payload: collector.client.publish("edge-inspector/st1/command", payload, qos=1)
        send(b"{not json")
        send(json.dumps({"command": "self-destruct", "request_id": "bad-1"}).encode())
        for i in range(3):
            send(json.dumps({"command": "trigger", "part_id": f"P{i}", "request_id": f"t{i}"}).encode())
        assert collector.wait(lambda c: len(c.verdicts()) == 3, 60)
        send(json.dumps({"command": "status", "request_id": "s1"}).encode())
        send(json.dumps({"command": "reload", "request_id": "r1"}).encode())
        assert collector.wait(lambda c: len(c.on("/reply")) == 7, 30)
        replies = {r.get("request_id"): r for r in map(json.loads, collector.on("/reply"))}
        assert replies[None]["ok"] is False and "not JSON" in replies[None]["error"]
        assert replies["bad-1"]["ok"] is False and "self-destruct" in replies["bad-1"]["error"]
        assert replies["s1"]["ok"] and replies["s1"]["result"]["verdicts"]["OK"] + \
            replies["s1"]["result"]["verdicts"]["NG"] == 3
        assert [v["part_id"] for v in collector.verdicts()] == ["P0", "P1", "P2"]  # one verdict per part
        assert collector.wait(lambda c: "reloaded_at" in service.state, 30)
        send(json.dumps({"command": "trigger", "part_id": "after-reload"}).encode())
        assert collector.wait(lambda c: len(c.verdicts()) == 4, 30)  # still inspecting


def test_refused_credentials_and_unreadable_frames_do_not_stop_the_service(tiny_kmdgan, replay_200, tmp_path,
                                                                           monkeypatch, caplog):
    _, model = tiny_kmdgan
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, src in enumerate(sorted(replay_200.iterdir())[:6]):
        (frames / f"{i:02d}.png").write_bytes(src.read_bytes())
    (frames / "03.png").write_bytes(b"not a png at all")  # a corrupt frame in the middle
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "wrong")
    with Broker(tmp_path / "broker", users={"inspector": "right"}) as broker:
        cfg = load_config(station(tmp_path, model, {"type": "folder", "path": str(frames), "fps": 20}, broker.port,
                                  mqtt={"username": "inspector", "password_env": "TEST_MQTT_PASSWORD"}))
        service = LineService(cfg, exit_when_done=True)
        seen = []
        service.echo = seen.append
        runner = start(service)
        runner.join(120)
    assert not runner.is_alive()
    assert [m["verdict"] == "ERROR" for m in seen] == [False, False, False, True, False, False]
    assert "unreadable image file" in seen[3]["error"] and seen[3]["seq"] == 4
    assert "refused the connection" in (service.state["broker_error"] or "")
    assert any("refused the connection" in r.message for r in caplog.records)
    assert any("unreadable frame" in r.message for r in caplog.records)


def test_sigterm_and_a_restart_of_the_service_lose_no_verdict(tiny_kmdgan, replay_200, tmp_path):
    _, model = tiny_kmdgan
    with Broker(tmp_path / "broker") as broker:
        collector = Collector(broker.port, "edge-inspector/st1/#")
        config = station(tmp_path, model, {"type": "folder", "path": str(replay_200), "fps": 30}, broker.port)
        notify = NotifySocket(tmp_path)
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "600000"}
        cmd = [sys.executable, "-m", "edge_inspector", "run", "--config", str(config), "--exit-when-done"]
        first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert collector.wait(lambda c: len(c.verdicts()) >= 30, 120)
            first.send_signal(signal.SIGTERM)
            # a bound on a hang, not a timing: the service drains its queue first, which took over
            # 60 s on a slow 2-core machine with a second job on the cores
            assert first.wait(180) == 0
            stderr = first.stderr.read()
            time.sleep(0.5)
            messages = notify.messages
            ready = [i for i, m in enumerate(messages) if m.startswith("READY=1")]
            assert len(ready) == 1 and "WATCHDOG=1" in messages[ready[0]:] and messages.index("STOPPING=1") > ready[0]
            assert collector.wait(lambda c: c.on("/status")[-1:] == [b"offline"], 10)
            produced = int(stderr.rsplit("verdicts OK ", 1)[1].split()[0]) + \
                int(stderr.rsplit(" NG ", 1)[1].split()[0])
            got = {v["seq"] for v in collector.verdicts()}
            assert got >= set(range(1, produced + 1))  # every verdict produced before SIGTERM arrived

            second = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
            assert second.wait(180) == 0
            seqs = [v["seq"] for v in collector.verdicts()]
            assert collector.wait(lambda c: {v["seq"] for v in c.verdicts()} >= set(range(1, produced + 201)), 30)
            seqs = [v["seq"] for v in collector.verdicts()]
            assert contiguous(seqs) and max(seqs) == produced + 200  # numbering went on across the restart
        finally:
            if first.poll() is None:
                first.kill()
            notify.done.set()
            collector.close()
