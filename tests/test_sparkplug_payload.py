"""The Sparkplug B payload module: the committed generated code is what protoc makes of the committed
.proto, and values go through the wire format and back with their Sparkplug types."""

import subprocess
import sys
from pathlib import Path

import pytest

from edge_inspector.service.sparkplug import payload as spb
from edge_inspector.service.sparkplug import sparkplug_b_pb2 as pb
from edge_inspector.service.sparkplug import tags
from edge_inspector.service.sparkplug.payload import DATETIME, INT64, STRING, MetricDef

HERE = Path(spb.__file__).parent


def test_the_committed_module_is_what_protoc_makes_of_the_committed_proto(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the test extra) not installed")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={tmp_path}",
                    str(HERE / "sparkplug_b.proto")], check=True)
    assert (tmp_path / "sparkplug_b_pb2.py").read_text() == (HERE / "sparkplug_b_pb2.py").read_text()


def test_field_numbers_and_datatypes_are_the_specifications():
    metric = pb.Payload.Metric.DESCRIPTOR.fields_by_name
    numbers = {name: metric[name].number for name in ("name", "alias", "timestamp", "datatype", "is_historical",
                                                      "is_null", "long_value", "double_value", "string_value")}
    assert numbers == {"name": 1, "alias": 2, "timestamp": 3, "datatype": 4, "is_historical": 5, "is_null": 7,
                       "long_value": 11, "double_value": 13, "string_value": 15}
    assert (pb.Int64, pb.Float, pb.Double, pb.Boolean, pb.String, pb.DateTime) == (4, 9, 10, 11, 12, 13)
    top = pb.Payload.DESCRIPTOR.fields_by_name
    assert (top["timestamp"].number, top["metrics"].number, top["seq"].number) == (1, 2, 3)


def test_values_survive_the_wire_with_their_types():
    defs = [MetricDef("a", 1, INT64), MetricDef("b", 2, STRING), MetricDef("c", 3, DATETIME),
            MetricDef("d", 4, INT64)]
    data = spb.encode([(defs[0], -5), (defs[1], "pit"), (defs[2], 1_700_000_000_123), (defs[3], None)], 7,
                      birth=True, timestamp=42, historical=True)
    decoded = spb.decode(data)
    assert decoded.seq == 7
    assert [spb.value_of(m) for m in decoded.metrics] == [-5, "pit", 1_700_000_000_123, None]
    assert [m.name for m in decoded.metrics] == ["a", "b", "c", "d"]
    assert all(m.timestamp == 42 and m.is_historical for m in decoded.metrics)
    data_msg = spb.decode(spb.encode([(defs[0], 3)], 8))
    assert not data_msg.metrics[0].name and data_msg.metrics[0].alias == 1  # DATA: alias alone


def test_ndeath_carries_bdseq_by_name_and_no_seq():
    death = spb.decode(spb.death(255))
    assert not death.HasField("seq")
    assert [(m.name, m.datatype, spb.value_of(m)) for m in death.metrics] == [("bdSeq", INT64, 255)]


def test_aliases_are_unique_and_every_value_has_a_definition():
    all_defs = tags.NODE + tags.DEVICE
    assert len({d.alias for d in all_defs}) == len(all_defs) and len({d.name for d in all_defs}) == len(all_defs)
    message = {"seq": 3, "verdict": "NG", "score": 0.9, "threshold": 0.5, "part_id": None,
               "regions": [{"area": 12}, {"area": 30}], "latency_ms": {"total": 4.0},
               "captured_at": "2026-11-29T10:00:00.250+00:00", "error": None, "frame": {"width": 8, "height": 6}}
    values = tags.device_values(message)
    assert set(values) == {d.name for d in tags.DEVICE}
    assert values["Inspection/Largest Region Area"] == 30 and values["Inspection/Region Count"] == 2
    assert values["Inspection/Captured At"] == 1_795_946_400_250
    assert set(tags.node_values({}, 1)) == {d.name for d in tags.NODE}


def test_topics_follow_the_namespace():
    t = spb.Topics("line1", "st1", "camera", "scada")
    assert (t.of("NBIRTH"), t.of("DDATA"), t.of("NCMD"), t.of("DCMD"), t.state) == (
        "spBv1.0/line1/NBIRTH/st1", "spBv1.0/line1/DDATA/st1/camera", "spBv1.0/line1/NCMD/st1",
        "spBv1.0/line1/DCMD/st1/camera", "spBv1.0/STATE/scada")
