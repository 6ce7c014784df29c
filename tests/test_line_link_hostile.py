"""The line link under a hostile plant network, with real Mosquitto brokers of the tests' own:
malformed and oversized commands, and a broker whose ACL refuses the verdict topic."""

import json
import logging
import random
import time

from edge_inspector.config import load_config
from edge_inspector.service.pipeline import LineService
from tests.mqtt_helpers import Broker, Collector, needs_mosquitto
from tests.service_helpers import start, station, triggered_station_online

pytestmark = needs_mosquitto


def hostile_payloads(n: int, seed: int = 0) -> list[bytes]:
    """n malformed command payloads of every kind a plant network can send."""
    rng = random.Random(seed)
    fixed = [b"[" * 100_000, b"{" * 5000, b'{"a":' * 3000, rng.randbytes(1 << 20), b"\xff\xfe\xfd",
             b'{"command": "trigger", "part_id": "\xc3\x28"}', b"", b"null", b"42", b'"trigger"', b"[]",
             json.dumps({"command": "trigger", "part_id": "A\nedge-inspector: INFO: forged"}).encode(),
             json.dumps({"command": "x" * 5000}).encode(), b"1" * 5000, b"9" * 4000]
    kinds = [
        lambda: rng.randbytes(rng.randint(1, 300)),
        lambda: json.dumps({"command": rng.choice(["trigger", "status", "reload"]),
                            "part_id": rng.choice([1, 2.5, True, [], {}, "", "p" * 200])}).encode(),
        lambda: json.dumps({"command": "".join(rng.choice("abc\n\r\x1b[31m") for _ in range(20)),
                            "request_id": f"bad-{rng.random()}"}).encode(),
        lambda: json.dumps({"command": "status", "extra\nfield": 1}).encode(),
        lambda: ("[" * rng.randint(900, 4000)).encode(),
        lambda: json.dumps({"command": rng.choice([None, 1, ["trigger"], {"x": 1}])}).encode(),
        lambda: json.dumps({"command": "trigger", "request_id": rng.choice([7, "", "r" * 300])}).encode(),
    ]
    return fixed + [rng.choice(kinds)() for _ in range(n - len(fixed))]


def test_a_thousand_hostile_commands_change_nothing_and_the_link_still_answers(tiny_kmdgan, replay_200, tmp_path,
                                                                               caplog):
    _, model = tiny_kmdgan
    payloads = hostile_payloads(1000)
    with Broker(tmp_path / "broker") as broker, \
            triggered_station_online(tmp_path, model, replay_200, broker) as (service, collector):
        for p in payloads:
            collector.client.publish("edge-inspector/st1/command", p, qos=1)
        # every malformed payload is answered with an error, none gets through
        assert collector.wait(lambda c: len(c.on("/reply")) >= len(payloads), 120), len(collector.on("/reply"))
        replies = [json.loads(r) for r in collector.on("/reply")]
        assert all(r["ok"] is False and r["error"] for r in replies)
        assert service.command_errors == len(payloads) and service.counts == {"OK": 0, "NG": 0, "ERROR": 0}
        assert any("at most 4096" in r["error"] for r in replies)  # the megabyte blob, refused unparsed
        # the link is alive: status is answered and a trigger gets its verdict with its part id
        collector.client.publish("edge-inspector/st1/command",
                                 json.dumps({"command": "status", "request_id": "s1"}).encode(), qos=1)
        collector.client.publish("edge-inspector/st1/command",
                                 json.dumps({"command": "trigger", "part_id": "P-after"}).encode(), qos=1)
        assert collector.wait(lambda c: len(c.verdicts()) == 1, 60)
        assert collector.verdicts()[0]["part_id"] == "P-after"
        assert collector.wait(lambda c: any(json.loads(r).get("request_id") == "s1" for r in c.on("/reply")), 30)
        assert service.link.client._thread.is_alive()
    # no network string forged a log line of its own
    assert not any("\n" in r.getMessage() for r in caplog.records if "command" in r.getMessage())


ACL_REFUSING = """user inspector
topic write edge-inspector/st1/status
topic write edge-inspector/st1/status/detail
topic write edge-inspector/st1/reply
topic write edge-inspector/st1/mask/#
topic read edge-inspector/st1/command

user observer
topic read edge-inspector/#
"""
ACL_FIXED = ACL_REFUSING.replace("topic write edge-inspector/st1/reply\n",
                                 "topic write edge-inspector/st1/reply\ntopic write edge-inspector/st1/verdict\n")


def test_verdicts_refused_by_the_broker_stay_in_the_outbox_until_it_takes_them(tiny_kmdgan, replay_200, tmp_path,
                                                                              monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    _, model = tiny_kmdgan
    frames = tmp_path / "frames"
    frames.mkdir()
    for src in sorted(replay_200.iterdir())[:8]:
        (frames / src.name).write_bytes(src.read_bytes())
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "pw")
    users = {"inspector": "pw", "observer": "pw"}
    with Broker(tmp_path / "broker", users=users, acl=ACL_REFUSING) as broker:
        collector = Collector(broker.port, "edge-inspector/st1/#", username="observer", password="pw")
        cfg = load_config(station(tmp_path, model, {"type": "folder", "path": str(frames), "fps": 20}, broker.port,
                                  mqtt={"username": "inspector", "password_env": "TEST_MQTT_PASSWORD",
                                        "protocol": "5", "publish_mask": "never"}))
        service = LineService(cfg)
        runner = start(service)
        try:
            deadline = time.monotonic() + 60
            while not (service.outbox.last_seq() == 8 and service.state["refused_pending"] == 8) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            assert service.outbox.last_seq() == 8 and service.state["refused_pending"] == 8
            assert service.outbox.depth() == 8 and not collector.verdicts()  # refused, kept, not delivered
            assert "Not authorized" in service.state["last_refusal"] and "refusing 8" in service.summary()
            time.sleep(2)  # retried meanwhile, refused again: still all there
            assert service.outbox.depth() == 8 and service.link.refusals > 8
            broker.reload_acl(ACL_FIXED)
            assert collector.wait(lambda c: sorted(v["seq"] for v in c.verdicts()) == list(range(1, 9)), 90)
            assert collector.wait(lambda c: service.outbox.depth() == 0 and service.state["refused_pending"] == 0, 10)
            assert service.state["last_refusal"] is None and "broker ok" in service.summary()
        finally:
            service.stop_event.set()
            runner.join(60)
            collector.close()
    refusals = [r.getMessage() for r in caplog.records if "broker refused" in r.getMessage()]
    assert len(refusals) == 1 and "Not authorized" in refusals[0]  # said once, not per message and retry
    assert any("refusal alarm cleared" in r.getMessage() for r in caplog.records)


def test_every_accepted_trigger_gets_exactly_one_verdict_across_a_sigkill(tiny_kmdgan, replay_200, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    _, model = tiny_kmdgan
    with Broker(tmp_path / "broker") as broker:
        collector = Collector(broker.port, "edge-inspector/st1/#")
        config = station(tmp_path, model, {"type": "folder", "path": str(replay_200), "trigger": "software"},
                         broker.port, service={"state_dir": str(tmp_path / "state"), "queue_size": 500,
                                               "max_pending_triggers": 60})
        cmd = [sys.executable, "-m", "edge_inspector", "run", "--config", str(config)]
        first = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        second = None
        try:
            assert collector.wait(lambda c: c.on("/status")[-1:] == [b"online"], 120)
            parts = [f"P{i:03d}" for i in range(150)]
            for i, part in enumerate(parts):
                collector.client.publish("edge-inspector/st1/command", json.dumps(
                    {"command": "trigger", "part_id": part, "request_id": part}), qos=1)
            # every command answered (accepted or refused) before the kill, so the bound is judged on all
            # 150 and not on however many the broker had delivered when the fifth verdict came
            assert collector.wait(lambda c: len(c.on("/reply")) >= len(parts) and len(c.verdicts()) >= 5, 60)
            first.send_signal(signal.SIGKILL)  # with accepted triggers outstanding
            first.wait(30)
            replies = {r["request_id"]: r for r in map(json.loads, collector.on("/reply"))}
            accepted = sorted(p for p, r in replies.items() if r["ok"])
            refused = [r for r in replies.values() if not r["ok"]]
            answered_before = {v["part_id"] for v in collector.verdicts()}
            assert refused and all("backlog full" in r["error"] for r in refused)  # the bound held
            assert set(accepted) - answered_before, "the kill came after every verdict: nothing was outstanding"
            second = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)

            def all_answered(c):
                return {v["part_id"] for v in c.verdicts()} >= set(accepted)

            assert collector.wait(all_answered, 120)
            time.sleep(1.0)  # anything extra would arrive now
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
            collector.close()
    verdicts = {(v["epoch"], v["seq"]): v for v in collector.verdicts()}  # de-duplicated redeliveries
    per_part: dict = {}
    for v in verdicts.values():
        per_part.setdefault(v["part_id"], []).append(v)
    assert {p: len(vs) for p, vs in per_part.items() if len(vs) != 1} == {}  # exactly one verdict per part
    assert set(accepted) <= set(per_part)
    orphans = [v for v in verdicts.values() if v["verdict"] == "ERROR"]
    assert orphans and all("never inspected" in v["error"] for v in orphans)
    assert len({v["epoch"] for v in verdicts.values()}) == 1  # one state database, one numbering
    assert os.path.exists(tmp_path / "state" / "outbox.sqlite3")
