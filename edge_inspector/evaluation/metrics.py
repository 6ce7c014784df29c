"""The benchmark protocol's metrics (docs/datasets.md), in NumPy (one sort per curve, exact under ties).

The ranking core (ranked_sums, roc_points, roc_auc) lives in model/scoring, which fitting uses too."""

from __future__ import annotations

import cv2
import numpy as np

from edge_inspector.model.mask_cut import cut_mask
from edge_inspector.model.scoring import class_counts, dice, ranked_sums, roc_auc, roc_points

AUPRO_FPR_LIMIT = 0.3


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise AP, sum over thresholds of (R_n - R_n-1) * P_n (as scikit-learn defines it)."""
    p, _ = class_counts(labels)
    tps, fps, _ = roc_points(labels, scores)
    precision = tps / (tps + fps)
    recall = tps / p
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The best F1 over all thresholds, and the threshold that gives it (score >= threshold is NG)."""
    p, _ = class_counts(labels)
    tps, fps, thresholds = roc_points(labels, scores)
    f1 = 2 * tps / (tps + fps + p)  # 2PR / (P + R) with P = tp/(tp+fp), R = tp/p
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Area under the per-region-overlap curve up to fpr_limit, normalised by fpr_limit (MVTec AD).

    Each connected defect region (8-connectivity, per image) weighs equally; the false-positive
    rate is over all defect-free pixels of all images. Exact: one sort of all pixels.
    """
    masks = np.asarray(masks, dtype=bool)
    weights = np.zeros(masks.shape, dtype=np.float64)
    regions = 0
    for i, mask in enumerate(masks):
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        for r in range(1, count):
            region = labels == r
            weights[i][region] = 1.0 / region.sum()
        regions += count - 1
    normal_pixels = masks.size - int(masks.sum())
    if regions == 0 or normal_pixels == 0:
        raise ValueError("AUPRO needs defect regions and defect-free pixels")
    (overlap, anomalous_seen), counts, _ = ranked_sums(np.asarray(maps, dtype=np.float32).ravel(), weights.ravel(), masks.ravel())
    fpr = np.r_[0.0, (counts - anomalous_seen) / normal_pixels]
    pro = np.r_[0.0, overlap / regions]
    # cut the curve at fpr_limit, interpolating the PRO there
    end = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[:end], pro[:end]
    if end < fpr.size:
        x = np.r_[x, fpr_limit]
        y = np.r_[y, np.interp(fpr_limit, fpr[end - 1 : end + 1], pro[end - 1 : end + 1])]
    return float(np.trapezoid(y, x) / fpr_limit)


def rates_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float,
                       regions: np.ndarray | None = None) -> tuple[float, float]:
    """(false-reject rate of normals, escape rate of anomalies) where score >= threshold is NG;
    with regions (per image, whether its cut mask has one: has_region), NG also needs a region, as
    the service decides with threshold.min_defect_area > 0."""
    labels = np.asarray(labels).astype(bool)
    ng = np.asarray(scores) >= threshold
    if regions is not None:
        ng &= np.asarray(regions, bool)
    false_rejects = float(ng[~labels].mean()) if (~labels).any() else float("nan")
    escapes = float((~ng[labels]).mean()) if labels.any() else float("nan")
    return false_rejects, escapes


def protocol_metrics(labels, scores, masks, maps, threshold: float, with_mask=None) -> dict:
    """Every metric of the protocol, each rounded to 4 decimals. with_mask: per image, whether its
    mask is known (normals always are); pixel metrics use those images only, and are None with
    the reason in "pixel_metrics" where no anomalous image has a mask."""
    labels = np.asarray(labels)
    f1, f1_threshold = f1_max(labels, scores)
    false_rejects, escapes = rates_at_threshold(labels, scores, threshold)
    out = {"image_auroc": roc_auc(labels, scores), "image_f1_max": f1, "false_reject_rate": false_rejects,
           "escape_rate": escapes}
    known = np.ones(len(labels), bool) if with_mask is None else np.asarray(with_mask, bool)
    masks, maps = np.asarray(masks)[known], np.asarray(maps)[known]
    missing = int((~known).sum())
    if masks.any() and not masks.all():
        out.update(pixel_auroc=roc_auc(masks, maps), pixel_ap=average_precision(masks, maps), aupro=aupro(masks, maps))
        note = "all test images" if not missing else f"{missing} anomalous test image(s) without a mask left out"
    else:
        out.update(pixel_auroc=None, pixel_ap=None, aupro=None)
        note = "pixel metrics need masks of the anomalous test images; none has one"
    order = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro", "image_f1_max", "false_reject_rate", "escape_rate")
    out = {k: None if out[k] is None else round(out[k], 4) for k in order}
    out["f1_max_threshold"] = f1_threshold
    out["pixel_metrics"] = note
    return out


def has_region(maps, pixel_threshold: float) -> np.ndarray:
    """Per map, whether its cut (cut_mask, any extent) holds a region: a pixel at or above
    pixel_threshold, every region's seed. A region of one map pixel covers at least one frame pixel,
    so this is the service's region rule at threshold.min_defect_area 1."""
    return np.array([bool((np.asarray(m) >= pixel_threshold).any()) for m in maps], dtype=bool)


AREA_BAND = (0.5, 2.0)  # a predicted defect area within this factor of the true one counts as right


def mask_metrics(labels, masks, maps, pixel_threshold: float, with_mask=None, extent: float | None = None,
                 per_image: bool = False) -> dict:
    """The mask the service ships: each map cut at pixel_threshold (with hysteresis down to extent,
    as model/mask_cut.cut_mask cuts it). Per defective image with a mask,
    IoU and Dice against the true mask (means over images) and predicted / true area (median, and
    the share within AREA_BAND); the share of good images with any pixel at or above the level.
    per_image: also each measured defective image's figures ("per_image", in input order)."""
    labels = np.asarray(labels).astype(bool)
    known = np.ones(len(labels), bool) if with_mask is None else np.asarray(with_mask, bool)
    records, spurious = [], []
    for label, ok, mask, amap in zip(labels, known, masks, maps):
        pred = cut_mask(np.asarray(amap), pixel_threshold, extent).astype(bool)
        if not label:
            spurious.append(bool(pred.any()))
            continue
        truth = np.asarray(mask, bool)
        if not ok or not truth.any():
            continue
        inter, union = np.logical_and(pred, truth).sum(), np.logical_or(pred, truth).sum()
        records.append({"iou": float(inter / union), "dice": dice(pred, truth),
                        "area_ratio": float(pred.sum() / truth.sum())})
    out = {"pixel_threshold": round(float(pixel_threshold), 4), "extent": extent, **summarise_masks(records),
           "spurious_share": round(float(np.mean(spurious)), 4) if spurious else None}
    if per_image:
        out["per_image"] = [{k: round(v, 4) for k, v in r.items()} for r in records]
    return out


def summarise_masks(per_image: list[dict]) -> dict:
    """Means of IoU and Dice, the median area ratio and the share within AREA_BAND over per-image
    records ({"iou", "dice", "area_ratio"}): mask_metrics' figures, and its per_image lists pooled
    (e.g. two folds of held-out defects, tools/validate_defects.py)."""
    if not per_image:
        return {"mask_iou": None, "mask_dice": None, "area_ratio_median": None, "area_within_0.5_2": None}
    ratios = [r["area_ratio"] for r in per_image]
    lo, hi = AREA_BAND
    return {"mask_iou": round(float(np.mean([r["iou"] for r in per_image])), 4),
            "mask_dice": round(float(np.mean([r["dice"] for r in per_image])), 4),
            "area_ratio_median": round(float(np.median(ratios)), 4),
            "area_within_0.5_2": round(float(np.mean([lo <= x <= hi for x in ratios])), 4)}
