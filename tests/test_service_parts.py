"""The line service's parts on their own: queue policy, outbox, postprocess, tiling, commands, notify."""

import json
import socket

import numpy as np
import pytest

from edge_inspector.cameras.base import Frame
from edge_inspector.config import InspectionConfig
from edge_inspector.inspection.frame import inspect_frame, tile_origins
from edge_inspector.inspection.postprocess import cut_mask, decide
from edge_inspector.service.commands import BadCommand, parse
from edge_inspector.service.frame_queue import FrameQueue
from edge_inspector.service.notify import Notifier
from edge_inspector.service.outbox import Outbox


def test_free_run_frames_drop_oldest_but_triggered_parts_are_never_dropped():
    q = FrameQueue(2)
    frames = [Frame(None, "c", part_id=str(i), triggered=i in (1, 4)) for i in range(6)]
    results = [q.put(f) for f in frames]
    assert results == [True, True, True, False, True, False] and q.dropped == 2
    kept = [q.get(0)[1].part_id for _ in range(len(q))]
    assert kept == ["1", "3", "4", "5"]  # both triggered parts, and the newest free-run frames


def test_outbox_sequence_is_contiguous_and_survives_reopening(tmp_path):
    box = Outbox(tmp_path / "o.db")
    seqs = [box.add_verdict(lambda s: [("t/verdict", json.dumps({"seq": s}).encode(), 1, False, "verdict")])
            for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    pending = box.pending()
    box.ack(pending[0].id)
    box.ack(pending[2].id)
    box.close()
    again = Outbox(tmp_path / "o.db")  # as after a restart of the service
    assert [m.seq for m in again.pending()] == [2, 4, 5]
    assert again.add_verdict(lambda s: []) == 6  # no message (no broker), yet the number is used


def test_full_outbox_drops_masks_first_then_oldest_verdicts(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=1000)
    for _ in range(3):
        box.add_verdict(lambda s: [("v", b"v" * 100, 1, False, "verdict"), (f"m/{s}", b"m" * 200, 1, False, "mask")])
    assert box.dropped == {"verdict": 0, "mask": 0}
    box.add_verdict(lambda s: [("v", b"v" * 100, 1, False, "verdict")])  # 1000 bytes: fits exactly
    box.add_verdict(lambda s: [("v", b"v" * 300, 1, False, "verdict")])
    assert box.dropped["mask"] == 2 and box.dropped["verdict"] == 0
    assert [m.seq for m in box.pending() if m.kind == "verdict"] == [1, 2, 3, 4, 5]
    box.add_verdict(lambda s: [("v", b"v" * 600, 1, False, "verdict")])
    assert box.dropped["verdict"] >= 1 and box.pending()[0].seq > 1


def test_regions_have_box_area_and_peak_and_min_area_decides():
    amap = np.zeros((100, 200), np.float32)
    amap[10:20, 30:50] = 0.9
    amap[60, 100] = 0.7  # a one-pixel speck
    d = decide(amap, score=5.0, threshold=1.0, pixel_threshold=0.5, min_area=0)
    assert d.verdict == "NG" and [r.as_dict() for r in d.regions] == [
        {"bbox": [30, 10, 20, 10], "area": 200, "peak": 0.9}, {"bbox": [100, 60, 1, 1], "area": 1, "peak": 0.7}]
    assert decide(amap, 0.5, 1.0, 0.5, 0).verdict == "OK"  # the score decides
    speck_only = np.zeros_like(amap)
    speck_only[60, 100] = 0.7
    assert decide(speck_only, 5.0, 1.0, 0.5, min_area=10).verdict == "OK"  # too small to count
    assert decide(amap, 5.0, 1.0, 0.5, min_area=10).verdict == "NG"


def test_hysteresis_extends_a_region_only_where_it_reaches_the_pixel_threshold():
    amap = np.zeros((60, 60), np.float32)
    amap[10:30, 10:30] = 0.3  # a defect's faint extent ...
    amap[18:22, 18:22] = 0.9  # ... around its strong core
    amap[45:55, 45:55] = 0.3  # a faint patch that never reaches the threshold
    plain = cut_mask(amap, 0.5)
    assert plain.sum() == 16 and plain.dtype == np.uint8
    grown = cut_mask(amap, 0.5, extent=0.2)
    assert grown.sum() == 400 and not grown[45:55, 45:55].any()  # the core's extent, not the faint patch
    assert (cut_mask(amap, 0.5, extent=0.6) == plain).all()  # an extent above the threshold: a plain cut
    assert not cut_mask(np.full((8, 8), 0.3, np.float32), 0.5, extent=0.2).any()  # no seed, no region
    d = decide(amap, 5.0, 1.0, 0.5, min_area=100, extent=0.2)
    assert d.verdict == "NG" and [r.as_dict() for r in d.regions] == [{"bbox": [10, 10, 20, 20], "area": 400,
                                                                       "peak": 0.9}]
    assert decide(amap, 5.0, 1.0, 0.5, min_area=100).verdict == "OK"  # the core alone is under min_area


def test_regions_of_a_small_map_are_reported_in_frame_pixels():
    amap = np.zeros((64, 64), np.float32)
    amap[8:12, 16:24] = 0.9  # 8 x 4 map pixels
    d = decide(amap, 5.0, 1.0, 0.5, min_area=500, scale=(4.0, 2.0), offset=(100, 50))
    assert d.regions == [] and d.verdict == "OK"  # 256 frame pixels: under min_area 500
    d = decide(amap, 5.0, 1.0, 0.5, min_area=200, scale=(4.0, 2.0), offset=(100, 50))
    assert [r.as_dict() for r in d.regions] == [{"bbox": [164, 66, 32, 8], "area": 256, "peak": 0.9}]
    assert d.verdict == "NG" and d.mask.shape == (64, 64)


def test_tiles_cover_the_frame_and_end_at_the_border():
    assert tile_origins(1000, 256, 0.25) == [0, 192, 384, 576, 744]
    assert tile_origins(200, 256, 0.25) == [0]


def _fake_model(size):
    """A stand-in that marks bright pixels: lets the tiling arithmetic be checked exactly."""
    def infer(batch):
        assert batch.shape[1:] == (3, size, size)
        maps = batch.mean(1)
        return maps.astype(np.float32), maps.reshape(len(batch), -1).max(1)
    return infer


def test_tiles_keep_a_small_defect_that_resizing_averages_away():
    frame = np.zeros((2048, 2048, 3), np.uint8)
    frame[1000:1004, 1500:1504] = 255  # 4 x 4 pixels on a 4-megapixel frame
    resized = inspect_frame(frame, _fake_model(256), 256, InspectionConfig(mode="resize"))
    tiled = inspect_frame(frame, _fake_model(256), 256, InspectionConfig(mode="tiles", overlap=0.25))
    assert tiled.tiles == 11 * 11 and resized.tiles == 1
    assert tiled.score > 0.99 and resized.score < 0.3
    assert tiled.anomaly_map.shape == frame.shape[:2]
    ys, xs = np.nonzero(tiled.anomaly_map > 0.5)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (1000, 1003, 1500, 1503)  # stitched back in place


def test_roi_limits_inspection_and_a_bad_roi_is_one_line():
    from edge_inspector.errors import UserError

    frame = np.full((300, 400), 200, np.uint8)  # mono frames are accepted
    out = inspect_frame(frame, _fake_model(64), 64, InspectionConfig(roi=[100, 50, 200, 100]))
    assert out.anomaly_map.shape == (64, 64) and out.scale == (200 / 64, 100 / 64)  # postprocessed small
    full = out.frame_map()
    assert full.shape == (300, 400) and full[:50].max() == 0 and full[60:140, 110:290].min() > 0.7
    with pytest.raises(UserError, match=r"inspection.roi \[300, 0, 200, 100\] lies outside the 400 x 300 frame"):
        inspect_frame(frame, _fake_model(64), 64, InspectionConfig(roi=[300, 0, 200, 100]))


@pytest.mark.parametrize("payload, error", [
    (b"\xff\xfe", "not JSON"), (b"[1]", "expected a JSON object"), (b'{"command": "explode"}', "unknown"),
    (b'{"command": "trigger", "part_id": 5}', "part_id must be a string"),
    (b'{"command": "status", "extra": 1}', "unknown field"),
])
def test_malformed_commands_are_refused_with_the_reason(payload, error):
    with pytest.raises(BadCommand, match=error):
        parse(payload)


def test_commands_parse():
    cmd = parse(b'{"command": "trigger", "part_id": "A-17", "request_id": "r1"}')
    assert (cmd.name, cmd.part_id, cmd.request_id) == ("trigger", "A-17", "r1")


def test_notifier_speaks_the_systemd_protocol(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    n = Notifier()
    assert n.watchdog_every == 1.0
    n.ready("ok")
    n.progress()
    n.progress()  # within the interval: no second ping
    n.stopping()
    got = [sock.recv(1024).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=ok", "WATCHDOG=1", "STOPPING=1"]
    monkeypatch.delenv("NOTIFY_SOCKET")
    Notifier().ready()  # not under systemd: silently nothing
