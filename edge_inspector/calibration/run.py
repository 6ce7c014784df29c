"""`edge-inspector calibrate`: grab and screen normal samples, import defects, train the model on
them, choose the threshold from held-out normals, write the report, switch the new calibration in.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_inspector.calibration import store
from edge_inspector.calibration.collect import grab, import_defects, store_normals
from edge_inspector.calibration.held_out import has_regions, ng, rates, regions_record
from edge_inspector.calibration.report import overlay, trade_off, write_report
from edge_inspector.data.folder import list_images
from edge_inspector.data.imageio import read_mask
from edge_inspector.data.sample import Sample, Split
from edge_inspector.errors import ConfigError, UserError
from edge_inspector.model.mask_cut import cut_levels, cut_mask
from edge_inspector.model.scoring import split_holdout

log = logging.getLogger(__name__)

MAX_FEW_SHOT = 10  # the protocol's few real anomalies


def samples(folder: Path) -> Split:
    normals = [Sample(p, None, 0, "good") for p in list_images(folder / "normal")] if (folder / "normal").is_dir() else []
    defects = []
    if (folder / "defects").is_dir():
        for p in list_images(folder / "defects"):
            if not p.stem.endswith("_mask"):
                defects.append(Sample(p, p.with_name(f"{p.stem}_mask.png"), 1, "defect"))
    return Split(train_normal=normals, few_shot=defects[:MAX_FEW_SHOT])


def calibrate(cfg, count: int | None = None, defects: Path | None = None, progress: bool = True,
              grab_frames: bool = True) -> Path:
    """Returns the new calibration's folder (now current)."""
    from edge_inspector.inspection.tiled_training import inspect_frames, train_station_model

    if cfg.model.kind != "kmdgan":
        raise ConfigError("model.kind: calibrate trains KMDGAN; set model.kind: kmdgan")
    folder = store.station_folder(cfg)
    collection: dict = {"kept": 0, "rejected": []}
    if grab_frames:
        if cfg.camera is None:
            raise ConfigError("camera: calibrate grabs normal samples from the station's camera; none is configured")
        frames = grab(cfg.camera, count or cfg.calibration.count, progress)
        collection = store_normals(frames, folder / "normal", cfg.camera)
        for source, reason in collection["rejected"]:
            log.warning("frame %s rejected: %s", source, reason)
        log.info("kept %d normal samples, rejected %d", collection["kept"], len(collection["rejected"]))
    if defects is not None:
        log.info("imported %d defect samples", import_defects(defects, folder / "defects"))
    split = samples(folder)
    if len(split.train_normal) < 10:
        raise UserError(f"{folder / 'normal'}: {len(split.train_normal)} normal samples; calibration needs at least 10")

    version = store.new_version_dir(folder)
    work = version.with_name(version.name + ".partial")  # a half-written calibration is never a version
    shutil.rmtree(work, ignore_errors=True)
    model = train_station_model(split, cfg.model, cfg.inspection, work / "model.safetensors",
                                cfg.threshold.target_false_reject_rate, seed=cfg.calibration.seed, progress=progress)
    _, holdout = split_holdout(split.train_normal)
    # judged as the service will (inspection.mode and roi; whole frames, in tiles when tiled), so
    # that the rates below are the line's
    normal = [r for *_, r in inspect_frames(model, holdout, cfg.inspection)]
    defects_out = inspect_frames(model, split.few_shot, cfg.inspection)
    # float64, as the service compares (a float32 array would round the threshold, the next float64
    # above the largest held-out score, back onto that score and count it as rejected)
    normal_scores = np.array([r.score for r in normal], dtype=np.float64)
    defect_scores = np.array([r.score for *_, r in defects_out], dtype=np.float64)
    level, extent = cut_levels(cfg.threshold, model)
    min_area = cfg.threshold.min_defect_area
    # with threshold.min_defect_area, NG also needs a region: which held-out parts have one
    gate = (has_regions(normal, level, extent, min_area),
            has_regions([r for *_, r in defects_out], level, extent, min_area)) if min_area else (None, None)
    regions = regions_record(*gate, level, extent, min_area) if min_area else None
    expected = rates(normal_scores, defect_scores, model.threshold, *gate)
    overlays = []
    for (sample, image, r), found in zip(defects_out, ng(defect_scores, model.threshold, gate[1])):
        truth = read_mask(sample.mask, image.shape[:2])
        overlays.append((f"{sample.image.name}: score {r.score:.2f}, {'NG' if found else 'OK (escape)'}",
                         overlay(image, cut_mask(r.frame_map(), level, extent) > 0, truth)))
    training = model.meta["training"]
    report = write_report(work / "report", cfg.station, model.threshold, normal_scores, defect_scores, overlays,
                          collection, training, gate, min_area)
    record = {"station": cfg.station, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "threshold": model.threshold, "pixel_threshold": model.pixel_threshold,
              "pixel_extent": model.pixel_extent, "model_sha256": model.meta["sha256"],
              "normal_samples": len(split.train_normal), "defect_samples": len(split.few_shot),
              "held_out_normals": len(normal_scores),
              "expected_false_reject_rate": expected["false_reject_rate"],
              "expected_escape_rate": expected["escape_rate"],
              "min_defect_area": min_area,
              "trade_off": trade_off(model.threshold, normal_scores, defect_scores, *gate),
              # what the commissioning page's threshold tuning replays
              "held_out_scores": {"normal": [round(float(s), 5) for s in normal_scores],
                                  "defect": [round(float(s), 5) for s in defect_scores]},
              "held_out_regions": regions,
              "report": "report/index.html"}
    (work / "calibration.json").write_text(json.dumps(record, indent=2) + "\n")
    work.rename(version)
    store.switch(folder, version)
    log.info("calibration %s is current (threshold %.4f); report: %s", version.name, model.threshold,
             version / "report" / report.name)
    return version
