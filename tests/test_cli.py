import json
import subprocess
import sys

import pytest

from edge_inspector.cli import main
from edge_inspector.data.synthetic_product import write_product_set


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(v in out for v in ["eval", "train", "export", "bench", "run", "calibrate", "demo"])


def test_eval_on_folder_with_corrupt_image_completes_and_names_it(tmp_path):
    root = write_product_set(tmp_path / "set", normals=20, per_defect=3, size=64, seed=1)
    bad = root / "good" / "part_9999.png"
    bad.write_bytes(b"garbage, not an image")
    out = tmp_path / "report.json"
    # as a user runs it: a separate process, warnings on its stderr
    run = subprocess.run([sys.executable, "-m", "edge_inspector", "eval", "--dataset", "folder", "--root", str(root),
                          "--input-size", "64", "--bank-size", "500", "--quiet", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"skipping unreadable image {bad}" in run.stderr
    assert "image AUROC" in run.stdout and "AUPRO" in run.stdout
    report = json.loads(out.read_text())
    assert set(report["metrics"]) >= {"image_auroc", "pixel_auroc", "pixel_ap", "aupro", "image_f1_max",
                                      "false_reject_rate", "escape_rate"}
    assert report["split"]["train_normal"] == 16  # 21 files listed, the corrupt one among them and report["version"]
    assert report["ms_per_image"] > 0


def test_eval_missing_root_is_one_line(tmp_path, capsys):
    assert main(["eval", "--dataset", "folder", "--root", str(tmp_path / "none"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "none") in err[0]


def test_train_then_eval_artefact_from_the_command_line(tmp_path, capsys):
    root = write_product_set(tmp_path / "set", normals=20, per_defect=3, size=64, seed=2)
    artefact = tmp_path / "m.safetensors"
    code = main(["train", "--dataset", "folder", "--root", str(root), "--input-size", "64", "--bank-size", "200",
                 "--iterations", "4", "--quiet", "--out", str(artefact)])
    assert code == 0 and artefact.is_file()
    assert f"model artefact: {artefact}" in capsys.readouterr().out
    out = tmp_path / "r.json"
    code = main(["eval", "--dataset", "folder", "--root", str(root), "--artefact", str(artefact), "--quiet",
                 "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["model"] == "kmdgan" and report["training"]["iterations"] == 4
    assert report["input_size"] == 64 and 0 <= report["metrics"]["pixel_auroc"] <= 1
    # the line service's frame path: at the model's own size, resize mode is the protocol path exactly
    frame = []
    for mode in (["--mode", "resize"], ["--mode", "tiles", "--tile-size", "32", "--overlap", "0.5"]):
        out = tmp_path / f"{mode[1]}.json"
        assert main(["eval", "--dataset", "folder", "--root", str(root), "--artefact", str(artefact), "--quiet",
                     "--out", str(out), *mode]) == 0
        frame.append(json.loads(out.read_text()))
    assert frame[0]["metrics"] == pytest.approx(report["metrics"], abs=1e-6)
    tiles = frame[1]
    assert tiles["inspection"]["mode"] == "tiles" and tiles["inspection"]["tile_size"] == 32
    assert tiles["eval_size"] == 64 and tiles["test_images_evaluated"] == report["test_images_evaluated"]
    assert 0 <= tiles["metrics"]["aupro"] <= 1 and tiles["metrics"] != report["metrics"]


def test_train_refuses_corrupt_artefact_in_eval(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert main(["eval", "--dataset", "synthetic", "--root", str(tmp_path / "s"), "--artefact", str(bad), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edge-inspector: error: model artefact corrupt: ") and str(bad) in err[-1]


def test_train_on_missing_cuda_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["train", "--dataset", "synthetic", "--root", str(tmp_path / "s"), "--device", "cuda:0", "--quiet"])
    assert code == 1
    assert "no CUDA" in capsys.readouterr().err
