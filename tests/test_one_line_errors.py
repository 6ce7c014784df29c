"""Bad settings and broken surroundings each give one line that names the key, file or value, and
exit code 1 or 2: no traceback."""

import json

import pytest
import yaml

from edge_inspector.cameras.opencv import OpenCVCamera, redact
from edge_inspector.cli import main
from edge_inspector.config import load_config
from edge_inspector.data.synthetic_product import write_product_set


def station_file(tmp_path, model, **sections):
    cfg = {"station": "st1", "model": {"kind": "kmdgan", "input_size": 128, "artefact": str(model.path)},
           "camera": {"type": "folder", "path": str(tmp_path)}, "service": {"state_dir": str(tmp_path / "state")}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("sections, exit_code, expected", [
    ({"mqtt": {"tls": {"ca_file": "/nonexistent/ca.pem"}}}, 1, "mqtt.tls.ca_file /nonexistent/ca.pem: not found"),
    ({"runtime": {"device": "banana"}}, 2, "runtime.device: "),
    ({"runtime": {"device": "cuda:0"}}, 1, "runtime.device cuda:0: no CUDA device here"),
])
def test_run_with_a_bad_setting_is_one_line(tiny_kmdgan, tmp_path, capsys, sections, exit_code, expected):
    _, model = tiny_kmdgan
    assert main(["run", "--config", str(station_file(tmp_path, model, **sections))]) == exit_code
    assert expected in one_line(capsys)


def test_run_with_a_state_dir_that_is_a_file_is_one_line(tiny_kmdgan, tmp_path, capsys):
    _, model = tiny_kmdgan
    (tmp_path / "blocker").write_text("")
    path = station_file(tmp_path, model, service={"state_dir": str(tmp_path / "blocker")})
    assert main(["run", "--config", str(path)]) == 1
    assert "service.state_dir" in one_line(capsys)


@pytest.mark.parametrize("cache, expected", [
    ("blocker/cache", "service.cache_dir"),  # under a file: cannot be made
    ("/proc/self", "cannot write the exported graph"),  # there, but no one may write in it, root included
])
def test_run_with_an_unusable_graph_cache_is_one_line(tiny_kmdgan, tmp_path, capsys, cache, expected):
    _, model = tiny_kmdgan
    (tmp_path / "blocker").write_text("")
    path = station_file(tmp_path, model, runtime={"backend": "onnxruntime"},
                        service={"cache_dir": str(tmp_path / cache) if not cache.startswith("/") else cache})
    assert main(["run", "--config", str(path)]) == 1
    assert expected in one_line(capsys)


def test_the_exported_graph_goes_to_the_cache_not_beside_the_artefact(tiny_kmdgan, tmp_path):
    from edge_inspector.service.control import load_model

    _, model = tiny_kmdgan
    cfg = load_config(station_file(tmp_path, model, runtime={"backend": "onnxruntime"},
                                   service={"cache_dir": str(tmp_path / "cache")}))
    before = set(model.path.parent.iterdir())
    load_model(cfg, cfg.service.cache_dir)
    assert set(model.path.parent.iterdir()) == before  # nothing written beside the (read-only) artefact
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1


def test_eval_on_anomalies_without_masks_reports_image_metrics_and_says_why_not_pixel(tmp_path, capsys):
    root = write_product_set(tmp_path / "set", normals=20, per_defect=3, size=64, seed=1)
    import shutil

    shutil.rmtree(root / "masks")
    out = tmp_path / "r.json"
    assert main(["eval", "--dataset", "folder", "--root", str(root), "--input-size", "64", "--bank-size", "300",
                 "--quiet", "--out", str(out)]) == 0
    assert "pixel metrics need masks" in capsys.readouterr().out
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["pixel_auroc"] is None and 0 <= metrics["image_auroc"] <= 1


def test_camera_credentials_never_leave_the_config():
    url = "rtsp://admin:s3cret@10.0.0.5:554/stream1"
    assert redact(url) == "rtsp://***@10.0.0.5:554/stream1"
    cfg = load_config_dict({"type": "opencv", "source": url})
    camera = OpenCVCamera(cfg)
    assert "s3cret" not in camera.name
    with pytest.raises(Exception) as info:  # nothing listens there: the error must not carry it either
        OpenCVCamera(load_config_dict({"type": "opencv", "source": "rtsp://u:pw@127.0.0.1:9/x"})).open()
    assert "pw@" not in str(info.value)


def load_config_dict(camera: dict):
    from edge_inspector.config import StationConfig

    return StationConfig.model_validate({"station": "s", "model": {"kind": "kmdgan"}, "camera": camera}).camera
