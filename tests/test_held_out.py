"""The calibration's held-out rates judged as the service judges: NG needing a region where
threshold.min_defect_area asks for one (calibration/held_out.py)."""

import numpy as np
import pytest

from edge_inspector.calibration.held_out import gates, has_regions, ng, rates, regions_record
from edge_inspector.inspection.frame import Inspection


def _inspection(blob: int, frame: int = 320) -> Inspection:
    """A 32 x 32 map over a frame x frame region: one blob x blob square at 0.9."""
    amap = np.zeros((32, 32), np.float32)
    amap[10 : 10 + blob, 10 : 10 + blob] = 0.9
    return Inspection(amap, 5.0, 1, (frame, frame), (0, 0, frame, frame))


def test_regions_are_measured_in_frame_pixels_at_the_cut():
    # 3 x 3 map pixels at 10 x 10 frame pixels each: a region of 900 frame pixels
    small, none = _inspection(3), _inspection(0)
    assert has_regions([small, none], 0.5, None, 500) == [True, False]
    assert has_regions([small], 0.5, None, 1000) == [False]  # too small for the rule
    assert has_regions([small], 0.95, None, 1) == [False]  # no pixel reaches the pixel threshold
    assert has_regions([_inspection(3, frame=32)], 0.5, None, 10) == [False]  # 9 pixels at scale 1


def test_rates_count_a_part_ng_only_with_a_region_where_a_gate_is_given():
    normal, defect = [1.0, 5.0, 6.0], [3.0, 7.0, 8.0]
    plain = rates(normal, defect, 4.0)
    assert (plain["normal_rejected"], plain["defect_escaped"], plain["regions_counted"]) == (2, 1, False)
    gated = rates(normal, defect, 4.0, [True, False, True], [True, True, False])
    assert (gated["normal_rejected"], gated["defect_escaped"], gated["regions_counted"]) == (1, 2, True)
    assert gated["false_reject_rate"] == pytest.approx(1 / 3) and gated["escape_rate"] == pytest.approx(2 / 3)
    assert gated["false_reject_upper_95"] < plain["false_reject_upper_95"]
    assert ng([4.0], 4.0).tolist() == [True]  # at the threshold is NG, as the service compares
    assert rates(normal, [], 4.0)["escape_rate"] is None


def test_recorded_regions_apply_only_at_the_levels_they_were_cut_at():
    record = regions_record([True, False], [True], 0.6, 0.3, 4)
    assert gates(record, 0.6, 4) == ([True, False], [True])
    assert gates(record, 0.7, 4) == (None, None)  # another pixel threshold: never cut there
    assert gates(record, 0.6, 9) == (None, None)  # another minimum area
    assert gates(record, 0.6, 0) == (None, None)  # the rule off: the score alone decides
    assert gates(None, 0.6, 4) == (None, None)  # a calibration from before regions were recorded
