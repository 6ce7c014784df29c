"""Training at native resolution, for stations that inspect in tiles (inspection.mode: tiles).

The model learns from tiles cut exactly as the service cuts a frame (the ROI, the tile size, the
overlap, the mirrored border: inspection/frame.py), so it never sees a part squashed to the model
input. The few real defects are cut with their masks and a tile counts as a defect only where it
shows some of it; synthetic anomalies are then drawn on tiles, at tile scale, by the training pool
as usual. The operating threshold is set on whole held-out training frames inspected as the
service inspects them (tiles stitched, a frame's score its largest tile's), not on single tiles,
so that its false-reject target holds per part.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edge_inspector.data.imageio import read_image, read_mask
from edge_inspector.data.sample import Sample, Split
from edge_inspector.errors import UserError
from edge_inspector.inspection.frame import inspect_frame, numpy_predict, padded, region, tile_boxes
from edge_inspector.model.kmdgan.artefact import load_artefact, update_artefact
from edge_inspector.model.scoring import (
    held_out_rejections,
    max_threshold_from_tail,
    split_holdout,
    threshold_from_normals,
)

log = logging.getLogger(__name__)

MIN_DEFECT_PIXELS = 4  # a defect's tile must show at least this much of it to be trained on as one
# which frame-level threshold the artefact runs. The tail fit (recorded beside it) traded false rejects
# for escapes on the large-frame synthetic set and was no better in total (docs/benchmarks.md)
THRESHOLD_RULE = "frames"


def cut_tiles(sample: Sample, inspection, size: int, out: Path) -> list[Sample]:
    """The sample's tiles as files under out (with their masks for a defect); unreadable: none."""
    image = read_image(sample.image)
    if image is None:
        return []
    mask = read_mask(sample.mask, image.shape[:2]) if sample.label == 1 else None
    x, y, w, h = region(image.shape[:2], inspection.roi)
    tile = inspection.tile_size or size
    part = padded(image[y : y + h, x : x + w], tile)
    part_mask = padded(mask[y : y + h, x : x + w].astype(np.uint8) * 255, tile) if mask is not None else None
    tiles = []
    for ty, tx in tile_boxes(part.shape[:2], tile, inspection.overlap):
        name = f"{sample.defect_type}-{sample.image.stem}-{ty}-{tx}"
        mask_path = None
        if part_mask is not None:
            crop_mask = part_mask[ty : ty + tile, tx : tx + tile]
            if int((crop_mask > 127).sum()) < MIN_DEFECT_PIXELS:
                continue  # this tile of a defective part is normal: not a defect example
            mask_path = out / f"{name}_mask.png"
            cv2.imwrite(str(mask_path), crop_mask)
        path = out / f"{name}.png"
        cv2.imwrite(str(path), part[ty : ty + tile, tx : tx + tile])
        tiles.append(Sample(path, mask_path, sample.label, sample.defect_type))
    return tiles


def tiled_split(split: Split, inspection, size: int, work: Path) -> tuple[Split, list[Sample]]:
    """(the split's training frames as tiles, the held-out whole frames for the threshold)."""
    fit, holdout = split_holdout(split.train_normal)
    work.mkdir(parents=True, exist_ok=True)
    normals = [t for s in fit for t in cut_tiles(s, inspection, size, work)]
    few = [t for s in split.few_shot for t in cut_tiles(s, inspection, size, work)]
    if split.few_shot and not few:
        log.warning("no tile of the %d defect samples shows %d defect pixels: training on synthetic anomalies alone",
                    len(split.few_shot), MIN_DEFECT_PIXELS)
    return Split(train_normal=normals, few_shot=few), holdout


def inspect_frames(model, samples: list[Sample], inspection) -> list[tuple]:
    """(sample, BGR frame, Inspection) for each readable frame, inspected as the service does."""
    infer = numpy_predict(model)
    out = []
    for s in samples:
        image = read_image(s.image)
        if image is not None:
            out.append((s, image, inspect_frame(image, infer, model.input_size, inspection)))
    return out


def frame_thresholds(results: list, overlap: float, target_false_reject_rate: float) -> dict[str, float]:
    """The frame-level threshold two ways: from the held-out frames' own scores (the largest of a
    few), and from the fitted tail of all their tiles' scores (model/scoring.py), with the number of
    independent tiles a frame is worth estimated from those frames' maxima."""
    frames = np.array([r.score for *_, r in results])
    tiles = np.concatenate([r.tile_scores for *_, r in results])
    most = float(np.mean([r.tiles for *_, r in results])) * (1 - overlap) ** 2  # overlapping tiles share pixels
    out = {"frames": threshold_from_normals(frames, target_false_reject_rate)}
    try:
        out["tile_tail"], out["independent_tiles"] = max_threshold_from_tail(tiles, max(most, 1.0),
                                                                            target_false_reject_rate, frames)
    except ValueError as exc:
        log.info("no tail fit of the held-out tile scores (%s): only the frames' own threshold", exc)
    return out


def train_station_model(split: Split, model_cfg, inspection, out: Path, target_false_reject_rate: float,
                        seed: int = 0, progress: bool = True, device: str = "cpu", resume: bool = False):
    """KMDGAN as the station will inspect: on tiles where inspection.mode is tiles, else on whole
    images resized to the model input (the protocol's path; inspection None is that too)."""
    from edge_inspector.model.kmdgan.training import train_kmdgan

    if inspection is not None and inspection.mode == "tiles":
        return train_on_tiles(split, model_cfg, inspection, out, target_false_reject_rate, seed, progress, device,
                              resume)
    return train_kmdgan(split, model_cfg, out, target_false_reject_rate, seed=seed, resume=resume, progress=progress,
                        device=device)


def train_on_tiles(split: Split, model_cfg, inspection, out: Path, target_false_reject_rate: float, seed: int = 0,
                   progress: bool = True, device: str = "cpu", resume: bool = False):
    """train_kmdgan on tiles, then the frame-level threshold; returns the loaded artefact."""
    from edge_inspector.model.kmdgan.training import train_kmdgan

    with tempfile.TemporaryDirectory(prefix="edge-inspector-tiles-") as tmp:
        tiled, holdout = tiled_split(split, inspection, model_cfg.input_size, Path(tmp))
        if len(tiled.train_normal) < 10:
            raise UserError(f"{len(tiled.train_normal)} training tiles: tiled training needs at least 10 (more "
                            "normal frames, or a smaller inspection.tile_size)")
        log.info("tiles: %d normal tiles from %d frames, %d defect tiles from %d samples; %d frames held out",
                 len(tiled.train_normal), len(split.train_normal) - len(holdout), len(tiled.few_shot),
                 len(split.few_shot), len(holdout))
        model = train_kmdgan(tiled, model_cfg, out, target_false_reject_rate, seed=seed, resume=resume,
                             progress=progress, device=device)
    results = inspect_frames(model, holdout, inspection)
    if not results:
        raise UserError(f"no held-out frame among {len(split.train_normal)} normals: tiled training needs at least "
                        "10 normal frames")
    candidates = frame_thresholds(results, inspection.overlap, target_false_reject_rate)
    rule = THRESHOLD_RULE if THRESHOLD_RULE in candidates else "frames"  # candidates also holds the n used
    threshold = candidates[rule]
    tile = inspection.tile_size or model_cfg.input_size
    rejected, upper = held_out_rejections([r.score for *_, r in results], threshold)  # what a few frames tell
    upper = round(upper, 4)
    record = {"mode": "tiles", "tile_size": tile, "overlap": inspection.overlap, "roi": inspection.roi,
              "tiles": len(tiled.train_normal), "defect_tiles": len(tiled.few_shot), "held_out_frames": len(results),
              "held_out_frames_rejected": rejected, "false_reject_upper_95": upper,
              "tile_threshold": model.threshold, "threshold_rule": rule, "thresholds": candidates}
    log.info("threshold %.4f (%s) from %d held-out frames inspected in tiles, %d of them at or above it, the "
             "false-reject rate of good frames may be up to %.1f %% (95 %% upper bound); a single tile's was %.4f",
             threshold, rule, len(results), rejected, 100 * upper, model.threshold)
    update_artefact(out, out, threshold=threshold, inspection=record)
    return load_artefact(out)
