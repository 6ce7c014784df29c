"""The evaluation harness: run a model over the test part, compute every protocol metric, report."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge_inspector import __version__
from edge_inspector.data.imageio import read_image, read_mask
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.sample import Sample, Split
from edge_inspector.evaluation.metrics import has_region, mask_metrics, protocol_metrics, rates_at_threshold
from edge_inspector.inspection.frame import Predict, inspect_frame
from edge_inspector.model.scoring import roc_auc

METRIC_NAMES = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "pixel_ap": "pixel AP",
    "aupro": "AUPRO (FPR<=0.3)",
    "image_f1_max": "image F1-max",
    "false_reject_rate": "false rejects @ threshold",
    "escape_rate": "escapes @ threshold",
}


def evaluate(predict: Predict, split: Split, size: int, threshold: float, batch_size: int = 1,
             progress: bool = True, pixel_threshold: float | None = None, extent: float | None = None) -> dict:
    """Metrics over split.test; time per image is the model call only (reading excluded)."""
    maps, scores, masks, labels, with_mask, types = [], [], [], [], [], []
    seconds = 0.0
    test = split.test
    for batch in tqdm(iter_batches(test, size, batch_size), total=-(-len(test) // batch_size),
                      desc="evaluate", disable=not progress):
        start = time.perf_counter()
        m, s = predict(batch.images)
        seconds += time.perf_counter() - start
        maps.append(np.asarray(m, dtype=np.float32))
        scores.append(np.asarray(s, dtype=np.float64))
        masks.append(batch.masks)
        labels += [s.label for s in batch.samples]
        with_mask += [s.label == 0 or s.mask is not None for s in batch.samples]
        types += [s.defect_type for s in batch.samples]
    result = _result(labels, np.concatenate(scores), np.concatenate(masks), np.concatenate(maps), threshold,
                     seconds, len(test), size, np.array(with_mask), pixel_threshold, extent, types)
    result.update(split=split.sizes(), batch_size=batch_size)
    return result


def frames_of(samples: Sequence[Sample]) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(image at its own resolution, mask of the same size, label) per readable sample."""
    for sample in samples:
        image = read_image(sample.image)
        mask = read_mask(sample.mask, image.shape[:2]) if image is not None else None
        if image is not None and mask is not None:  # read_* named an unreadable file in a warning
            yield image, mask, sample.label


def evaluate_frames(frames: Iterable[tuple[np.ndarray, np.ndarray, int]], predict: Predict, size: int,
                    threshold: float, inspection, eval_size: int, total: int | None = None,
                    pixel_threshold: float | None = None, extent: float | None = None,
                    progress: bool = True) -> dict:
    """Metrics over frames of any size inspected as the line service does (resize or tiles, see
    service.inspect); each anomaly map is brought to frame resolution, then map and mask to an
    eval_size square grid (masks by nearest neighbour) so that frames of different sizes stack.
    Time per frame counts the whole inspection (tiling and stitching included)."""
    maps, scores, masks, labels, regions = [], [], [], [], []
    seconds = 0.0
    grid = (eval_size, eval_size)
    for image, mask, label in tqdm(frames, total=total, desc=f"evaluate ({inspection.mode})", disable=not progress):
        start = time.perf_counter()
        found = inspect_frame(image, predict, size, inspection)
        frame_map = found.frame_map()
        seconds += time.perf_counter() - start
        maps.append(cv2.resize(frame_map, grid, interpolation=cv2.INTER_LINEAR))
        masks.append(cv2.resize(mask.astype(np.uint8), grid, interpolation=cv2.INTER_NEAREST) > 0)
        scores.append(found.score)
        labels.append(label)
        # on the frame's own map: a one-pixel peak may not survive the resize to the grid
        regions.append(pixel_threshold is not None and bool((frame_map >= pixel_threshold).any()))
    result = _result(labels, np.array(scores, np.float64), np.stack(masks), np.stack(maps), threshold, seconds,
                     total if total is not None else len(labels), size, pixel_threshold=pixel_threshold,
                     extent=extent, regions=regions)
    result.update(inspection=inspection.model_dump(mode="json"), eval_size=eval_size, batch_size=inspection.batch)
    return result


def _result(labels, scores, masks, maps, threshold, seconds, offered, size, with_mask=None,
            pixel_threshold=None, extent=None, types=None, regions=None) -> dict:
    result = {
        "metrics": protocol_metrics(np.array(labels), scores, masks, maps, threshold, with_mask),
        "mask_at_operating_point": None if pixel_threshold is None else
        mask_metrics(labels, masks, maps, pixel_threshold, with_mask, extent),
        "threshold": threshold,
        "test_images_evaluated": len(labels),
        "test_images_skipped": offered - len(labels),
        "ms_per_image": round(1000 * seconds / max(len(labels), 1), 1),
        "input_size": size,
        "version": __version__,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {_cpu_count()} cores",
    }
    if pixel_threshold is not None:
        # the verdict where NG also needs a region of the shipped mask (threshold.min_defect_area 1)
        false_rejects, escapes = rates_at_threshold(labels, scores, threshold,
                                                    has_region(maps, pixel_threshold) if regions is None else regions)
        result["verdict_needing_a_region"] = {"false_reject_rate": round(false_rejects, 4),
                                              "escape_rate": round(escapes, 4)}
    kinds = sorted({t for t, label in zip(types or [], labels) if label})
    if len(kinds) > 1:  # which defect kinds the image score ranks and passes: each against the good images
        result["detection_by_defect_type"] = detection_by_kind(labels, scores, types, kinds, threshold)
    if pixel_threshold is not None and len(kinds) > 1:  # which defect kinds the masks miss
        result["mask_by_defect_type"] = {
            kind: mask_metrics([1] * len(pick), masks[pick], maps[pick], pixel_threshold,
                               None if with_mask is None else np.asarray(with_mask)[pick], extent)
            for kind in kinds for pick in [np.flatnonzero([t == kind for t in types])]}
    return result


def detection_by_kind(labels, scores, types, kinds, threshold: float) -> dict:
    """Per defect kind: its images' count, image AUROC against all good images, escape rate at the
    threshold. The overall AUROC is the count-weighted mean of the kinds' (same good images)."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    out = {}
    for kind in kinds:
        pick = np.array([t == kind for t in types]) & labels
        both = pick | ~labels
        _, escapes = rates_at_threshold(labels[both], scores[both], threshold)
        out[kind] = {"count": int(pick.sum()), "image_auroc": round(roc_auc(labels[both], scores[both]), 4),
                     "escape_rate": round(escapes, 4)}
    return out


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def format_table(result: dict) -> str:
    rows = [(METRIC_NAMES[k], f"{v:.4f}" if v is not None else f"n/a: {result['metrics']['pixel_metrics']}")
            for k, v in result["metrics"].items() if k in METRIC_NAMES]
    sizes = result["split"]
    rows += [
        ("operating threshold", f"{result['threshold']:.4f}"),
        ("split (train / few-shot / test normal / test anomalous)",
         f"{sizes['train_normal']} / {sizes['few_shot']} / {sizes['test_normal']} / {sizes['test_anomalous']}"),
        ("test images skipped (unreadable)", str(result["test_images_skipped"])),
        (f"time per image (batch {result['batch_size']})", f"{result['ms_per_image']} ms"),
    ]
    mask = result.get("mask_at_operating_point")
    if mask:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        cut = f"pixel threshold {mask['pixel_threshold']}"
        cut += f", extent {mask['extent']}" if mask.get("extent") else ""
        rows += [(f"mask IoU / Dice @ {cut}",
                  f"{fmt(mask['mask_iou'])} / {fmt(mask['mask_dice'])}"),
                 ("predicted / true area: median, share within 0.5-2",
                  f"{fmt(mask['area_ratio_median'])}, {fmt(mask['area_within_0.5_2'])}"),
                 ("good images with a spurious region", fmt(mask["spurious_share"]))]
        gated = result.get("verdict_needing_a_region")
        if gated:
            rows.append(("false rejects / escapes, NG needing a region",
                         f"{fmt(gated['false_reject_rate'])} / {fmt(gated['escape_rate'])}"))
        rows += [(f"  {kind}: mask IoU, area ratio (median, share within 0.5-2)",
                  f"{fmt(m['mask_iou'])}, {fmt(m['area_ratio_median'])}, {fmt(m['area_within_0.5_2'])}")
                 for kind, m in result.get("mask_by_defect_type", {}).items()]
    rows += [(f"  {kind}: image AUROC against the good images, escapes",
              f"{d['image_auroc']:.4f}, {d['escape_rate']:.4f} ({d['count']} images)")
             for kind, d in result.get("detection_by_defect_type", {}).items()]
    width = max(len(r[0]) for r in rows)
    head = f"{result.get('model', 'model')} on {result.get('dataset', 'dataset')} (edge-inspector {result['version']})"
    return "\n".join([head, "-" * len(head)] + [f"{k:<{width}}  {v}" for k, v in rows])


def write_json(result: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path
