"""Training at native resolution: tiles cut as the service cuts frames, defects cut with their masks,
the threshold set on whole held-out frames inspected in tiles; calibrate honours inspection.mode."""

import json
import logging
import shutil

import cv2
import numpy as np
import pytest
import yaml

from edge_inspector.calibration.run import calibrate
from edge_inspector.config import InspectionConfig, load_config
from edge_inspector.data import load_split
from edge_inspector.data.sample import Sample
from edge_inspector.data.synthetic_product import write_large_frame_set
from edge_inspector.inspection.frame import tile_boxes
from edge_inspector.inspection.tiled_training import MIN_DEFECT_PIXELS, inspect_frames, tiled_split
from edge_inspector.model.kmdgan.artefact import load_artefact
from edge_inspector.model.scoring import split_holdout
from edge_inspector.service.control import load_model

TILES = InspectionConfig(mode="tiles", tile_size=128, overlap=0.25)


@pytest.fixture(scope="module")
def large_set(tmp_path_factory):
    return write_large_frame_set(tmp_path_factory.mktemp("large"), normals=20, per_defect=1, width=512, height=384,
                                 seed=5)


def test_large_frames_carry_small_defects_with_exact_masks(large_set):
    split = load_split("folder", large_set)
    for sample in split.few_shot + split.test_anomalous:
        image = cv2.imread(str(sample.image), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE) > 127
        assert image.shape == (384, 512)
        ys, xs = np.nonzero(mask)
        assert 5 <= max(np.ptp(xs), np.ptp(ys)) + 1 <= 50  # a few pixels to a few tens on a 512 px frame
        assert abs(float(image[mask].mean()) - float(image[~mask].mean())) > 15  # the mask is where it was drawn


def test_tiles_are_cut_as_the_service_cuts_frames_and_defect_tiles_keep_their_masks(large_set, tmp_path):
    split = load_split("folder", large_set)
    tiled, holdout = tiled_split(split, TILES, 128, tmp_path / "tiles")
    fit, held = split_holdout(split.train_normal)
    assert holdout == held
    boxes = tile_boxes((384, 512), 128, 0.25)
    assert len(tiled.train_normal) == len(fit) * len(boxes)  # held-out frames give no tile
    frame = cv2.imread(str(fit[0].image))
    for (ty, tx), tile in zip(boxes, tiled.train_normal[: len(boxes)]):
        assert np.array_equal(cv2.imread(str(tile.image)), frame[ty : ty + 128, tx : tx + 128])
    assert tiled.few_shot and all(t.label == 1 for t in tiled.few_shot)
    for tile in tiled.few_shot:
        source = next(s for s in split.few_shot if f"-{s.image.stem}-" in tile.image.name)
        ty, tx = (int(v) for v in tile.image.stem.split("-")[-2:])
        truth = cv2.imread(str(source.mask), cv2.IMREAD_GRAYSCALE)[ty : ty + 128, tx : tx + 128]
        mask = cv2.imread(str(tile.mask), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(mask > 127, truth > 127) and (mask > 127).sum() >= MIN_DEFECT_PIXELS


def test_calibrate_in_tiles_mode_trains_on_tiles_and_sets_the_threshold_on_whole_frames(large_set, tmp_path,
                                                                                        caplog):
    station = tmp_path / "calibration" / "big"
    (station / "normal").mkdir(parents=True)
    (station / "defects").mkdir()
    for path in sorted((large_set / "good").iterdir()):
        shutil.copy(path, station / "normal" / path.name)
    for kind in ("scratch", "pit", "crack"):
        shutil.copy(large_set / kind / f"{kind}_0000.png", station / "defects" / f"{kind}.png")
        shutil.copy(large_set / "masks" / kind / f"{kind}_0000.png", station / "defects" / f"{kind}_mask.png")
    cfg_file = tmp_path / "big.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "station": "big", "calibration": {"root": str(tmp_path / "calibration")},
        "model": {"kind": "kmdgan", "input_size": 128, "bank_size": 1000, "iterations": 15, "batch_size": 4},
        "inspection": {"mode": "tiles", "tile_size": 128, "overlap": 0.25}}))
    cfg = load_config(cfg_file)
    version = calibrate(cfg, grab_frames=False, progress=False)
    model = load_artefact(version / "model.safetensors")
    record = model.meta["inspection"]
    assert record["mode"] == "tiles" and record["tile_size"] == 128 and record["held_out_frames"] == 2
    assert record["tiles"] == 18 * len(tile_boxes((384, 512), 128, 0.25)) and record["defect_tiles"] >= 3
    held = split_holdout([p for p in sorted((station / "normal").iterdir())])[1]
    frames = [r for *_, r in inspect_frames(model, [Sample(p, None, 0, "good") for p in held], cfg.inspection)]
    scores = [r.score for r in frames]
    thresholds = record["thresholds"]  # the frames' own: every one of 2 passes at a 1 % target
    assert thresholds["frames"] == pytest.approx(float(np.nextafter(max(scores), np.inf)), rel=1e-5)
    # 2 frames of 20 tiles leave 2 scores above their 95th percentile: too few for a tail, no tail estimate
    assert "tile_tail" not in thresholds and record["threshold_rule"] == "frames"
    # and the record says how little 2 frames can tell: none rejected, yet up to 66 % at 95 %
    assert record["held_out_frames_rejected"] == 0
    assert record["false_reject_upper_95"] == pytest.approx(0.6576, abs=1e-3)
    assert model.threshold == thresholds["frames"]
    calibration = json.loads((version / "calibration.json").read_text())
    assert calibration["held_out_scores"]["normal"] == pytest.approx(scores, abs=1e-4)
    assert frames[0].frame_map().shape == (384, 512)  # judged at frame resolution, stitched
    with caplog.at_level(logging.WARNING):
        load_model(cfg, tmp_path / "cache")
        assert "trained for inspection.mode" not in caplog.text
        load_model(cfg.model_copy(update={"inspection": InspectionConfig(mode="resize")}), tmp_path / "cache")
        assert "trained for inspection.mode tiles and the station inspects in resize" in caplog.text
