import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from edge_inspector.evaluation import metrics


def test_auroc_hand_computed():
    # pairs (anomalous, normal): (0.8,0.1) ok, (0.8,0.4) ok, (0.35,0.1) ok, (0.35,0.4) wrong -> 3/4
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auroc_counts_ties_as_half():
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_average_precision_hand_computed():
    # ranked: 0.9(1) 0.8(0) 0.7(1) -> precision at each positive: 1, 2/3 -> AP = (1 + 2/3) / 2
    assert metrics.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(5 / 6)


def test_f1_max_hand_computed():
    # threshold 0.7 takes both positives and one negative: P=2/3, R=1 -> F1 = 0.8
    f1, threshold = metrics.f1_max([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert f1 == pytest.approx(0.8)
    assert threshold == pytest.approx(0.7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curves_match_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 5000)
    scores = np.round(rng.random(5000) + 0.4 * labels, 2)  # rounding makes many ties
    assert metrics.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    p, r, _ = precision_recall_curve(labels, scores)
    assert metrics.f1_max(labels, scores)[0] == pytest.approx(np.max(2 * p * r / np.maximum(p + r, 1e-12)), abs=1e-9)


def test_aupro_hand_computed():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0:2] = True  # region A: two pixels
    masks[1, 3, 3] = True  # region B: one pixel
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0] = 1.0  # half of A
    maps[1, 3, 3] = 2.0  # all of B
    # curve (fpr, pro): (0,0) (0,0.5) (0,0.75) then everything at (1,1); at fpr 0.3 pro = 0.825
    expected = 0.3 * (0.75 + 0.825) / 2 / 0.3
    assert metrics.aupro(masks, maps) == pytest.approx(expected)


def test_aupro_perfect_and_inverted():
    masks = np.zeros((3, 32, 32), bool)
    masks[0, 4:10, 4:10] = True
    masks[1, 20:22, 5:30] = True
    assert metrics.aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    assert metrics.aupro(masks, (~masks).astype(float)) == pytest.approx(0.0)


def test_aupro_weighs_regions_equally():
    # a large region found and a small one missed gives the same PRO as the reverse
    masks = np.zeros((1, 40, 40), bool)
    masks[0, 0:20, 0:20] = True
    masks[0, 30:32, 30:32] = True
    big = masks.astype(float) * 0
    big[0, 0:20, 0:20] = 1
    small = masks.astype(float) * 0
    small[0, 30:32, 30:32] = 1
    assert metrics.aupro(masks, big) == pytest.approx(metrics.aupro(masks, small))


def test_rates_at_threshold():
    fr, esc = metrics.rates_at_threshold([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.6, 0.3, 0.7, 0.4], 0.5)
    assert fr == pytest.approx(0.25)
    assert esc == pytest.approx(0.5)


def test_rates_at_threshold_with_the_region_rule():
    # NG needs the score and a region: a good image above the threshold without a region is kept,
    # a defect above it without one escapes
    labels, scores = [0, 0, 0, 0, 1, 1, 1], [0.1, 0.6, 0.7, 0.3, 0.7, 0.9, 0.4]
    regions = [True, False, True, True, True, False, True]
    fr, esc = metrics.rates_at_threshold(labels, scores, 0.5, regions)
    assert fr == pytest.approx(0.25) and esc == pytest.approx(2 / 3)
    assert metrics.rates_at_threshold(labels, scores, 0.5) == pytest.approx((0.5, 1 / 3))


def test_has_region_is_any_pixel_the_cut_keeps():
    maps = np.zeros((3, 8, 8))
    maps[1, 2, 2] = 0.6  # one pixel at the level: the seed of a region
    maps[2] = 0.59  # faint everywhere, nowhere at the level
    regions = metrics.has_region(maps, 0.6)
    assert regions.tolist() == [False, True, False]
    from edge_inspector.model.mask_cut import cut_mask
    assert regions.tolist() == [bool(cut_mask(m, 0.6, extent=0.3).any()) for m in maps]


def test_metric_needs_both_classes():
    with pytest.raises(ValueError):
        metrics.roc_auc([1, 1], [0.2, 0.3])


def test_protocol_metrics_has_every_metric():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 1])
    masks = np.zeros((4, 16, 16), bool)
    masks[2, 2:6, 2:6] = masks[3, 8:12, 8:12] = True
    maps = rng.random((4, 16, 16)) + masks
    out = metrics.protocol_metrics(labels, maps.reshape(4, -1).max(1), masks, maps, threshold=1.5)
    assert set(out) >= {"image_auroc", "pixel_auroc", "pixel_ap", "aupro", "image_f1_max",
                        "false_reject_rate", "escape_rate"}
    assert out["pixel_auroc"] > 0.9


def test_mask_metrics_measure_the_cut_map_against_the_truth():
    masks = np.zeros((3, 10, 10), bool)
    masks[1, 0:4, 0:4] = True  # 16 px defect
    masks[2, 5:7, 5:7] = True  # 4 px defect
    maps = np.zeros((3, 10, 10))
    maps[0, 9, 9] = 0.9  # a spurious pixel on the good image
    maps[1, 0:4, 0:2] = 0.8  # half the defect found, nothing else: IoU 0.5, Dice 2/3, area 0.5
    maps[2, 4:8, 4:8] = 0.7  # a blob 4x the defect: IoU 0.25, Dice 0.4, area 4
    out = metrics.mask_metrics([0, 1, 1], masks, maps, pixel_threshold=0.6)
    assert out["mask_iou"] == pytest.approx((0.5 + 0.25) / 2, abs=1e-4)
    assert out["mask_dice"] == pytest.approx((2 / 3 + 0.4) / 2, abs=1e-4)
    assert out["area_ratio_median"] == pytest.approx(2.25) and out["area_within_0.5_2"] == 0.5
    assert out["spurious_share"] == 1.0
    assert metrics.mask_metrics([0, 1, 1], masks, maps, pixel_threshold=0.95)["spurious_share"] == 0.0
    maps[1, 0:4, 2:4] = 0.4  # the rest of the first defect, faint: the extent level takes it in
    grown = metrics.mask_metrics([0, 1, 1], masks, maps, pixel_threshold=0.6, extent=0.3)
    assert grown["mask_iou"] == pytest.approx((1.0 + 0.25) / 2, abs=1e-4) and grown["extent"] == 0.3
    per = metrics.mask_metrics([0, 1, 1], masks, maps, pixel_threshold=0.6, extent=0.3, per_image=True)["per_image"]
    assert [p["iou"] for p in per] == pytest.approx([1.0, 0.25], abs=1e-4)  # the defective images, in order
    assert [p["area_ratio"] for p in per] == pytest.approx([1.0, 4.0])


def test_per_image_figures_pooled_over_two_runs_equal_one_run_over_all_images():
    # two folds' held-out defects (tools/validate_defects.py) are summarised over all their images
    rng = np.random.default_rng(3)
    masks = np.zeros((6, 12, 12), bool)
    for i in range(6):
        masks[i, i : i + 4, 2 : 2 + i + 2] = True
    maps = rng.random((6, 12, 12)) * 0.5 + masks * 0.4  # uneven masks: every image its own IoU and area
    whole = metrics.mask_metrics([1] * 6, masks, maps, pixel_threshold=0.6, per_image=True)
    first = metrics.mask_metrics([1] * 2, masks[:2], maps[:2], pixel_threshold=0.6, per_image=True)
    rest = metrics.mask_metrics([1] * 4, masks[2:], maps[2:], pixel_threshold=0.6, per_image=True)
    pooled = metrics.summarise_masks(first["per_image"] + rest["per_image"])
    for key in ("mask_iou", "mask_dice", "area_ratio_median", "area_within_0.5_2"):
        assert pooled[key] == pytest.approx(whole[key], abs=2e-4)
    assert len({round(p["iou"], 3) for p in whole["per_image"]}) > 1  # not all alike
    assert first["mask_iou"] != pytest.approx(whole["mask_iou"], abs=1e-3)  # one fold alone is not the pool
    assert metrics.summarise_masks([])["mask_iou"] is None
