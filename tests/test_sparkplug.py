"""The Sparkplug B edge node against Mosquitto brokers of the tests' own: every message decoded with
the generated module and held to Sparkplug 3.0's rules. Each test is named for the rule it checks."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edge_inspector.config import MqttConfig, SparkplugConfig, load_config
from edge_inspector.service.pipeline import LineService
from edge_inspector.service.sparkplug import payload as spb
from edge_inspector.service.sparkplug import tags
from edge_inspector.service.sparkplug.node import SparkplugNode
from tests.mqtt_helpers import Broker, Collector, needs_mosquitto
from tests.service_helpers import start, station
from tests.sparkplug_helpers import Host, Relay

pytestmark = needs_mosquitto
HOST_ID = "scada1"


class Station:
    """The node's view of a service: a status it reads, verdicts it is handed."""

    def __init__(self):
        self.counts = {"OK": 0, "NG": 0, "ERROR": 0}
        self.seq = 0

    def status(self) -> dict:
        return {"station": "st1", "epoch": "e1", "model": {"version": "v1", "sha256": "ab12", "backend": "onnxruntime"},
                "threshold": 0.5, "pixel_threshold": 0.4, "verdicts": dict(self.counts), "outbox_depth": 0,
                "broker_refusals": 0, "availability": "online"}

    def verdict(self, node: SparkplugNode, verdict: str = "OK") -> dict:
        self.seq += 1
        self.counts[verdict] += 1
        regions = [{"area": 40 + self.seq, "bbox": [1, 2, 3, 4]}] if verdict == "NG" else []
        message = {"seq": self.seq, "verdict": verdict, "score": 0.1 * (self.seq % 10), "threshold": 0.5,
                   "part_id": f"p{self.seq}", "regions": regions, "latency_ms": {"total": 12.5},
                   "captured_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "error": None,
                   "frame": {"width": 640, "height": 480}}
        node.verdict(message)
        return message


def make_node(port: int, state: Path, st: Station, **spb_cfg) -> SparkplugNode:
    mqtt_cfg = MqttConfig(host="127.0.0.1", port=port, protocol="5", keepalive=5)
    node = SparkplugNode(mqtt_cfg, SparkplugConfig(group_id="line1", **spb_cfg), "st1", state, st.status)
    node.start()
    return node


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def host(broker):
    h = Host(broker.port)
    yield h
    h.close()


def births(host: Host) -> list:
    return host.of("NBIRTH")


def test_will_is_an_ndeath_carrying_the_births_bdseq_which_goes_up_on_each_connect_and_wraps(broker, host, tmp_path):
    (tmp_path / "sparkplug-bdseq").write_text("254")  # the last run's will: this run starts at 255
    relay = Relay(broker.port)
    st = Station()
    node = make_node(relay.port, tmp_path, st)
    try:
        assert host.wait(lambda h: len(births(h)) == 1)
        assert births(host)[0].values()["bdSeq"] == 255
        relay.cut()  # the connection dies without a DISCONNECT: the broker sends the will
        assert host.wait(lambda h: len(h.of("NDEATH")) == 1)
        death = host.of("NDEATH")[0]
        assert death.values() == {"bdSeq": 255} and death.qos == 1 and not death.retain
        assert not death.payload.HasField("seq")
        assert host.wait(lambda h: len(births(h)) == 2, 30)  # paho reconnects through the relay
        assert births(host)[1].values()["bdSeq"] == 0 and births(host)[1].payload.seq == 0  # 255 -> 0
        relay.cut()
        assert host.wait(lambda h: len(h.of("NDEATH")) == 2 and len(births(h)) == 3, 30)
        assert host.of("NDEATH")[1].values() == {"bdSeq": 0} and births(host)[2].values()["bdSeq"] == 1
    finally:
        node.stop()
        relay.close()
    restarted = make_node(broker.port, tmp_path, st)  # a new process reads the last bdSeq and goes on
    try:
        assert host.wait(lambda h: len(births(h)) == 4)
        assert births(host)[3].values()["bdSeq"] == 2
    finally:
        restarted.stop()


def test_a_killed_service_process_leaves_its_ndeath_will(broker, host, tmp_path):
    code = ("import sys, time; sys.path.insert(0, '.');"
            "from tests.test_sparkplug import Station, make_node;"
            f"make_node({broker.port}, __import__('pathlib').Path({str(tmp_path)!r}), Station()); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1])
    try:
        assert host.wait(lambda h: len(births(h)) == 1, 30)
        born = births(host)[0].values()["bdSeq"]
        proc.kill()
        assert host.wait(lambda h: len(h.of("NDEATH")) == 1)
        assert host.of("NDEATH")[0].values() == {"bdSeq": born}
    finally:
        proc.kill()
        proc.wait(10)


def test_seq_is_0_on_nbirth_then_counts_up_and_wraps_255_to_0_over_300_messages(broker, host, tmp_path):
    st = Station()
    node = make_node(broker.port, tmp_path, st)
    try:
        assert host.wait(lambda h: len(h.of("DBIRTH")) == 1)
        for _ in range(300):
            st.verdict(node)
        assert host.wait(lambda h: len(h.of("DDATA")) == 300, 30)
        time.sleep(2 * 1.0)  # the last NDATA (counts) after the last verdict
    finally:
        node.stop()
    stream = [s for s in host.seen if s.kind != "NDEATH"]
    seqs = [s.payload.seq for s in stream]
    assert stream[0].kind == "NBIRTH" and seqs[0] == 0
    assert len(seqs) > 300
    assert all(b == (a + 1) % 256 for a, b in zip(seqs, seqs[1:])), seqs
    assert seqs.count(0) >= 2 and max(seqs) == 255  # it went round
    assert all(s.qos == 0 and not s.retain for s in stream)  # BIRTH and DATA at QoS 0, never retained


def test_birth_comes_before_any_data_and_data_metrics_are_aliases_within_the_birth(broker, host, tmp_path):
    st = Station()
    node = make_node(broker.port, tmp_path, st)
    try:
        assert host.wait(lambda h: len(h.of("DBIRTH")) == 1)
        for verdict in ("OK", "NG", "ERROR", "NG"):
            st.verdict(node, verdict)
        assert host.wait(lambda h: len(h.of("DDATA")) == 4 and h.of("NDATA"))
    finally:
        node.stop()
    kinds = [s.kind for s in host.seen]
    assert kinds[:2] == ["NBIRTH", "DBIRTH"]
    nbirth, dbirth = births(host)[0].payload, host.of("DBIRTH")[0].payload
    for birth in (nbirth, dbirth):
        assert all(m.name and m.HasField("alias") and m.HasField("datatype") for m in birth.metrics)
    aliases = {m.alias: m for m in list(nbirth.metrics) + list(dbirth.metrics)}
    assert len(aliases) == len(nbirth.metrics) + len(dbirth.metrics)  # unique over node and device
    assert {"bdSeq", "Node Control/Rebirth"} <= {m.name for m in nbirth.metrics}
    assert next(m for m in nbirth.metrics if m.name == "Node Control/Rebirth").boolean_value is False
    for kind, birth in (("NDATA", nbirth), ("DDATA", dbirth)):
        own = {m.alias: m.datatype for m in birth.metrics}
        for seen in host.of(kind):
            for m in seen.payload.metrics:
                assert not m.name and own[m.alias] == m.datatype  # alias only, the birth's datatype
    ng = host.of("DDATA")[1].values()
    first = host.of("DDATA")[0].values()
    threshold = {m.name: m.alias for m in dbirth.metrics}["Inspection/Threshold"]
    assert threshold in first and threshold not in ng  # on change: an unchanged metric is not sent again
    alias = {m.name: m.alias for m in dbirth.metrics}
    assert ng[alias["Inspection/Verdict"]] == "NG" and ng[alias["Inspection/Largest Region Area"]] == 42
    counts = {m.name: m.alias for m in nbirth.metrics}
    last = {}
    for seen in host.of("NDATA"):
        last.update(seen.values())
    assert last[counts["Verdicts/NG"]] == 2 and last[counts["Verdicts/ERROR"]] == 1


def test_rebirth_on_ncmd_sends_nbirth_and_dbirth_again_with_the_same_bdseq(broker, host, tmp_path):
    st = Station()
    node = make_node(broker.port, tmp_path, st)
    try:
        assert host.wait(lambda h: len(h.of("DBIRTH")) == 1)
        st.verdict(node)
        assert host.wait(lambda h: len(h.of("DDATA")) == 1)
        ncmd = "spBv1.0/line1/NCMD/st1"
        host.command(ncmd, b"\xff\x00 not protobuf")  # hostile: ignored, the node goes on
        host.command(ncmd, spb.encode([(tags.BY_NAME[tags.REBIRTH], False)], None, birth=True))  # false: nothing
        host.command(ncmd, spb.encode([(tags.BY_NAME[tags.REBIRTH], True)], None, birth=True))
        assert host.wait(lambda h: len(births(h)) == 2 and len(h.of("DBIRTH")) == 2)
        st.verdict(node)
        assert host.wait(lambda h: len(h.of("DDATA")) == 2)
    finally:
        node.stop()
    first, second = births(host)
    assert second.payload.seq == 0 and second.values()["bdSeq"] == first.values()["bdSeq"]
    again = host.seen.index(second)
    assert host.seen[again + 1].kind == "DBIRTH" and host.seen[again + 1].payload.seq == 1
    assert len(births(host)) == 2 and not host.of("NDEATH")[:-1]  # no birth for the false or hostile ones
    # the rebirth's DBIRTH carries the last verdict, so a host that lost its tags gets them back
    assert host.of("DBIRTH")[1].values()["Inspection/Seq"] == 1


def test_primary_host_gates_nbirth_and_verdicts_meanwhile_are_replayed_as_historical(broker, host, tmp_path):
    st = Station()
    node = make_node(broker.port, tmp_path, st, primary_host_id=HOST_ID)
    try:
        early = [st.verdict(node) for _ in range(3)]
        time.sleep(2)
        assert not host.seen  # no STATE from the host yet: no birth, nothing published
        for hostile in (b"{not json", b'{"online": "yes", "timestamp": 5000}', b"\xff" * 70000):
            host.client.publish(f"spBv1.0/STATE/{HOST_ID}", hostile, qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert not host.seen  # none of them is a host's online state
        host.publish_state(HOST_ID, True, 1000)
        assert host.wait(lambda h: len(h.of("DDATA")) == 3)
        assert [s.kind for s in host.seen[:2]] == ["NBIRTH", "DBIRTH"]
        for seen, message in zip(host.of("DDATA"), early):
            assert all(m.is_historical for m in seen.payload.metrics)
            assert {m.timestamp for m in seen.payload.metrics} == {tags.captured_ms(message)}
        first_bd = births(host)[0].values()["bdSeq"]
        host.publish_state(HOST_ID, False, 500)  # older than the online one: a stale state, ignored
        st.verdict(node)
        assert host.wait(lambda h: len(h.of("DDATA")) == 4)
        assert not any(m.is_historical for m in host.of("DDATA")[3].payload.metrics)
        host.publish_state(HOST_ID, False, 2000)
        assert host.wait(lambda h: len(h.of("NDEATH")) == 1)
        assert host.of("NDEATH")[0].values() == {"bdSeq": first_bd}
        away = [st.verdict(node, "NG") for _ in range(2)]
        time.sleep(1.5)
        assert len(births(host)) == 1 and len(host.of("DDATA")) == 4  # the host is away: nothing sent
        host.publish_state(HOST_ID, True, 3000)
        assert host.wait(lambda h: len(h.of("DDATA")) == 6)
        assert births(host)[1].values()["bdSeq"] == (first_bd + 1) % 256  # a new connection
        replayed = host.of("DDATA")[4:]
        alias = {m.name: m.alias for m in host.of("DBIRTH")[0].payload.metrics}
        assert [r.values()[alias["Inspection/Seq"]] for r in replayed] == [m["seq"] for m in away]
        assert all(m.is_historical for r in replayed for m in r.payload.metrics)
    finally:
        node.stop()


def test_a_clean_stop_publishes_ndeath_with_the_sessions_bdseq(broker, host, tmp_path):
    node = make_node(broker.port, tmp_path, Station())
    assert host.wait(lambda h: len(births(h)) == 1)
    node.stop()
    assert host.wait(lambda h: len(h.of("NDEATH")) == 1)
    death = host.of("NDEATH")[0]
    assert death.values() == {"bdSeq": births(host)[0].values()["bdSeq"]} and death.qos == 1
    time.sleep(1)
    assert len(host.of("NDEATH")) == 1  # the will is not sent as well: the stop was clean


def test_the_line_service_sends_every_verdict_on_both_paths(tiny_kmdgan, replay_200, tmp_path, broker, host):
    _, model = tiny_kmdgan
    frames = tmp_path / "frames"
    frames.mkdir()
    for path in sorted(replay_200.iterdir())[:12]:
        (frames / path.name).symlink_to(path)
    collector = Collector(broker.port, "edge-inspector/st1/#")
    cfg = load_config(station(tmp_path, model, {"type": "folder", "path": str(frames), "fps": 20}, broker.port,
                              mqtt={"sparkplug": {"group_id": "line1"}}))
    service = LineService(cfg, exit_when_done=True)
    runner = start(service)
    runner.join(120)
    collector.wait(lambda c: len(c.verdicts()) == 12, 10)
    collector.close()
    json_seqs = [v["seq"] for v in collector.verdicts()]
    assert sorted(set(json_seqs)) == list(range(1, 13))
    alias = {m.name: m.alias for m in host.of("DBIRTH")[0].payload.metrics}
    ddata = [s.values() for s in host.of("DDATA")]
    assert [d[alias["Inspection/Seq"]] for d in ddata] == list(range(1, 13))
    by_seq = {v["seq"]: v for v in collector.verdicts()}
    held = host.of("DBIRTH")[0].values()  # the host's tags: the birth, then each DATA's changes
    held = {alias[name]: value for name, value in held.items()}
    for d in ddata:
        held.update(d)
        v = by_seq[d[alias["Inspection/Seq"]]]
        assert held[alias["Inspection/Verdict"]] == v["verdict"] and held[alias["Frame/Width"]] == v["frame"]["width"]
        assert held[alias["Inspection/Score"]] == pytest.approx(v["score"])
    nbirth = births(host)[0].values()
    assert nbirth["Model/Hash"] == by_seq[1]["model"]["sha256"] and nbirth["Camera/State"] in ("online", "camera-lost")
    assert host.of("NDEATH")  # the service's clean stop
