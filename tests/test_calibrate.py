"""Calibrating a station from the pylon camera emulator replaying image files, and rolling back."""

import hashlib
import json

import cv2
import numpy as np
import pytest
import yaml

from edge_inspector.calibration import store
from edge_inspector.calibration.quality import screen
from edge_inspector.calibration.report import overlay
from edge_inspector.calibration.store import model_path, station_folder
from edge_inspector.cli import main
from edge_inspector.config import load_config
from edge_inspector.data.synthetic_product import DEFECT_TYPES, draw_defect, make_part
from edge_inspector.errors import UserError
from edge_inspector.model.kmdgan.artefact import load_artefact


def _line(tmp_path):
    rng = np.random.default_rng(11)
    frames, defects = tmp_path / "frames", tmp_path / "defects"
    frames.mkdir()
    (defects / "masks").mkdir(parents=True)
    kinds = ["good"] * 24 + ["motion", "defocus", "flare"]
    for i, kind in enumerate(kinds):
        part = make_part(rng, 128)
        if kind == "motion":
            part = cv2.filter2D(part, -1, np.full((11, 1), 1 / 11, np.float32))
        elif kind == "defocus":
            part = cv2.GaussianBlur(part, (0, 0), 3)
        elif kind == "flare":
            part = cv2.convertScaleAbs(part, alpha=2.2, beta=40)
        cv2.imwrite(str(frames / f"{i:03d}_{kind}.png"), part)
    for kind in DEFECT_TYPES:
        image, mask = draw_defect(make_part(rng, 128), kind, rng)
        cv2.imwrite(str(defects / f"{kind}.png"), image)
        cv2.imwrite(str(defects / "masks" / f"{kind}.png"), mask.astype(np.uint8) * 255)
    return frames, defects, len(kinds)


def _station(tmp_path, frames, seed=0):
    cfg = {"station": "emu", "calibration": {"root": str(tmp_path / "calibration"), "seed": seed},
           "model": {"kind": "kmdgan", "input_size": 128, "bank_size": 1000, "iterations": 15, "batch_size": 4},
           "threshold": {"target_false_reject_rate": 0.2},
           "camera": {"type": "pylon", "trigger": "software", "pixel_format": "Mono8", "timeout_ms": 3000,
                      "features": {"TestImageSelector": "Off", "ImageFilename": str(frames), "ImageFileMode": "On"}}}
    path = tmp_path / f"station{seed}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_calibrate_from_the_emulator_rejects_bad_frames_and_rolls_back_exactly(tmp_path, capsys):
    frames, defects, count = _line(tmp_path)
    config = _station(tmp_path, frames)
    assert main(["calibrate", "--config", str(config), "--count", str(count), "--defects", str(defects),
                 "--quiet"]) == 0
    cfg = load_config(config)
    folder = station_folder(cfg)
    manifest = json.loads((folder / "normal" / "manifest.json").read_text())
    reasons = [r["reason"] for r in manifest["rejected"]]
    assert len(manifest["samples"]) == 24 and len(reasons) == 3
    assert any(r.startswith("motion blur") for r in reasons) and any(r.startswith("out of focus") for r in reasons)
    assert any(r.startswith("over-exposed") for r in reasons)
    kept = folder / "normal" / manifest["samples"][0]["file"]
    assert manifest["samples"][0]["sha256"] == _sha(kept) and manifest["samples"][0]["camera"]["type"] == "pylon"

    first = store.current(folder)
    record = json.loads((first / "calibration.json").read_text())
    model = load_artefact(model_path(cfg))  # the service's path to it: the current calibration
    assert model.threshold == record["threshold"] and record["defect_samples"] == 3
    assert (first / "report" / "index.html").is_file() and (first / "report" / "scores.png").is_file()
    plot = cv2.imread(str(first / "report" / "scores.png"))
    assert plot.shape[0] >= 300 and plot.std() > 10  # a drawn figure, not a blank one
    first_hash = _sha(first / "model.safetensors")

    # a second calibration (another seed) from the samples kept, then back to the first
    assert main(["calibrate", "--config", str(_station(tmp_path, frames, seed=1)), "--no-grab", "--quiet"]) == 0
    second = store.current(folder)
    assert second != first and _sha(second / "model.safetensors") != first_hash
    assert main(["calibrate", "--config", str(config), "--rollback"]) == 0
    assert store.current(folder) == first and _sha(model_path(cfg)) == first_hash
    assert "is current again" in capsys.readouterr().out
    assert main(["calibrate", "--config", str(config), "--rollback"]) == 1  # nothing older


def test_screen_passes_a_clean_set_and_names_duplicates():
    rng = np.random.default_rng(0)
    parts = [make_part(rng, 128) for _ in range(8)]
    assert screen(parts) == [None] * 8
    assert screen(parts + [parts[2].copy()])[-1] == "near-duplicate of a frame already kept"


def test_overlay_draws_the_mask_exactly_where_it_is():
    image = np.full((64, 80), 128, np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[10:20, 30:45] = True
    out = overlay(image, mask, mask)
    red = (out[..., 2] > 180) & (out[..., 1] < 100)
    green = (out[..., 1] > 200) & (out[..., 2] < 100)
    assert red[11:19, 31:44].all() and not red[~mask].any()
    ys, xs = np.nonzero(green)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (10, 19, 30, 44)  # the outline on the mask's border


@pytest.mark.parametrize("args", [["--rollback"]])
def test_rollback_without_calibration_is_one_line(tmp_path, args, capsys):
    config = _station(tmp_path, tmp_path)
    assert main(["calibrate", "--config", str(config), *args]) == 1
    assert "no current calibration" in capsys.readouterr().err


def test_a_first_calibration_without_defect_samples_trains_on_synthetic_anomalies(tmp_path, capsys, caplog):
    frames, _, count = _line(tmp_path)
    config = _station(tmp_path, frames)
    assert main(["calibrate", "--config", str(config), "--count", str(count), "--quiet"]) == 0
    cfg = load_config(config)
    folder = station_folder(cfg)
    record = json.loads((store.current(folder) / "calibration.json").read_text())
    assert record["defect_samples"] == 0 and record["expected_escape_rate"] is None
    assert not list(folder.glob("versions/*.partial"))  # nothing half-written left behind
    report = (store.current(folder) / "report" / "index.html").read_text()
    assert "not estimated: no labelled defect samples" in report and "95 % Wilson bound" in report
    assert "rule empirical" in report  # the default rule, named beside the threshold it set
    assert [r["escapes"] for r in record["trade_off"]] == [None] * len(record["trade_off"])
    assert any("synthetic anomalies alone" in r.getMessage() for r in caplog.records)


def test_defects_take_the_folder_layouts_mask_convention(tmp_path):
    from edge_inspector.calibration.collect import import_defects

    rng = np.random.default_rng(3)
    source = tmp_path / "labelled"
    source.mkdir()
    image, mask = draw_defect(make_part(rng, 64), "pit", rng)
    cv2.imwrite(str(source / "pit_01.jpg"), image)  # a JPEG with its mask as <name>.png beside it,
    cv2.imwrite(str(source / "pit_01.png"), mask.astype(np.uint8) * 255)  # as the folder layout takes it
    assert import_defects(source, tmp_path / "out") == 1
    assert (tmp_path / "out" / "pit_01_mask.png").is_file()
    (source / "pit_01.png").unlink()
    with pytest.raises(UserError, match="pit_01.jpg: no mask found"):
        import_defects(source, tmp_path / "out2")


def test_calibration_rates_count_the_region_rule_and_a_retune_at_another_level_drops_it(tmp_path):
    from edge_inspector.calibration.held_out import rates

    frames, defects, count = _line(tmp_path)
    config = _station(tmp_path, frames)
    cfg = yaml.safe_load(config.read_text())
    cfg["threshold"]["min_defect_area"] = 4
    config.write_text(yaml.safe_dump(cfg))
    assert main(["calibrate", "--config", str(config), "--count", str(count), "--defects", str(defects),
                 "--quiet"]) == 0
    folder = station_folder(load_config(config))
    record = json.loads((store.current(folder) / "calibration.json").read_text())
    scores, regions = record["held_out_scores"], record["held_out_regions"]
    assert record["min_defect_area"] == 4 and regions["min_defect_area"] == 4
    assert regions["pixel_threshold"] == record["pixel_threshold"]
    assert len(regions["normal"]) == len(scores["normal"]) and len(regions["defect"]) == len(scores["defect"]) == 3
    # the recorded rates are the gated ones, recomputed from what the record holds
    expected = rates(scores["normal"], scores["defect"], record["threshold"], regions["normal"], regions["defect"])
    assert record["expected_false_reject_rate"] == expected["false_reject_rate"]
    assert record["expected_escape_rate"] == expected["escape_rate"]
    assert "a region of at least 4 frame pixels" in (store.current(folder) / "report" / "index.html").read_text()

    # a retune at the same pixel threshold keeps the regions; at another, its rates go by score alone
    t = record["threshold"] * 0.5
    store.retune(folder, t, record["pixel_threshold"], "test", "cli")
    kept = json.loads((store.current(folder) / "calibration.json").read_text())
    assert kept["held_out_regions"] == regions
    assert kept["expected_false_reject_rate"] == rates(scores["normal"], [], t, regions["normal"])["false_reject_rate"]
    store.retune(folder, t, min(0.99, record["pixel_threshold"] + 0.05), "test", "cli")
    moved = json.loads((store.current(folder) / "calibration.json").read_text())
    assert moved["held_out_regions"] is None
    assert moved["expected_false_reject_rate"] == rates(scores["normal"], [], t)["false_reject_rate"]
