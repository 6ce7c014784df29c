from pathlib import Path

import pytest

from edge_inspector.cli import main
from edge_inspector.config import load_config
from edge_inspector.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "station.yaml"
VALID = """\
station: line1-cam1
model:
  kind: memory-bank
  input_size: 256
camera:
  type: folder
  path: images
mqtt:
  host: 127.0.0.1
  password_env: EI_TEST_PASSWORD
"""


def write(tmp_path, text):
    path = tmp_path / "station.yaml"
    path.write_text(text)
    return path


def error_of(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_example_config_is_valid():
    cfg = load_config(EXAMPLE)
    assert cfg.station and cfg.model.kind == "memory-bank"


def test_valid_config_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    assert cfg.camera.type == "folder"
    assert cfg.camera.path == tmp_path / "images"  # relative to the config file
    assert cfg.threshold.target_false_reject_rate == 0.01  # default


def test_unknown_key_names_file_line_and_path(tmp_path):
    path = write(tmp_path, VALID.replace("  input_size: 256", "  input_size: 256\n  bank_sise: 10"))
    assert error_of(path) == f"{path}:5: model.bank_sise: unknown key"


def test_wrong_type(tmp_path):
    path = write(tmp_path, VALID.replace("input_size: 256", "input_size: large"))
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: model.input_size: ") and "integer" in msg and "\n" not in msg


def test_unknown_union_tag_lists_choices(tmp_path):
    msg = error_of(write(tmp_path, VALID.replace("type: folder", "type: webcam")))
    assert ":6: camera.type: " in msg and "'folder'" in msg and "'pylon'" in msg


def test_missing_required_key(tmp_path):
    msg = error_of(write(tmp_path, VALID.replace("  path: images\n", "")))
    assert "camera.path: Field required" in msg


def test_bad_yaml_names_line(tmp_path):
    path = write(tmp_path, VALID.replace("  kind: memory-bank", "  kind: [memory-bank"))
    msg = error_of(path)
    assert msg.startswith(f"{path}:") and "invalid YAML" in msg and "\n" not in msg


def test_missing_file():
    assert error_of(Path("/nonexistent/station.yaml")) == "/nonexistent/station.yaml: config file not found"


def test_inline_password_refused(tmp_path):
    msg = error_of(write(tmp_path, VALID.replace("password_env: EI_TEST_PASSWORD", "password: hunter2")))
    assert "mqtt" in msg and "password_env or password_file" in msg and "hunter2" not in msg


def test_password_from_env_and_file(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, VALID))
    monkeypatch.delenv("EI_TEST_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="EI_TEST_PASSWORD is not set"):
        cfg.mqtt.password()
    monkeypatch.setenv("EI_TEST_PASSWORD", "s3cret")
    assert cfg.mqtt.password() == "s3cret"
    (tmp_path / "pw").write_text("from-file\n")
    cfg = load_config(write(tmp_path, VALID.replace("password_env: EI_TEST_PASSWORD", "password_file: pw")))
    assert cfg.mqtt.password() == "from-file"


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, VALID + "colour: blue\n")
    assert main(["eval", "--config", str(path), "--dataset", "synthetic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edge-inspector: error: {path}:11: colour: unknown key"]


def test_cli_missing_config_exit_2(tmp_path, capsys):
    assert main(["eval", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_sparkplug_ids_with_topic_characters_are_refused_on_their_line(tmp_path):
    path = write(tmp_path, VALID + "  sparkplug:\n    group_id: line/1\n")
    assert error_of(path).startswith(f"{path}:12: mqtt.sparkplug.group_id: String should match pattern")
    cfg = load_config(write(tmp_path, VALID + "  sparkplug:\n    group_id: line1\n    primary_host_id: scada\n"))
    assert cfg.mqtt.sparkplug.device_id == "camera" and cfg.mqtt.sparkplug.edge_node_id is None


def test_a_page_beyond_loopback_without_a_token_is_refused_on_its_line(tmp_path):
    path = write(tmp_path, VALID + "service:\n  http:\n    host: 0.0.0.0\n")
    assert error_of(path).startswith(f"{path}:12: service.http: Value error, host 0.0.0.0 reaches beyond this machine")
    cfg = load_config(write(tmp_path, VALID + "service:\n  http:\n    port: 8081\n"))
    assert cfg.service.http.host == "127.0.0.1" and cfg.service.http.token() is None


def test_synthetic_kinds_and_the_pixel_extent_are_checked_by_name(tmp_path):
    ok = load_config(write(tmp_path, "station: s\nmodel: {kind: kmdgan, synthetic_kinds: [texture, line]}\n"
                                     "threshold: {pixel_extent: 0.3}\n"))
    assert ok.model.synthetic_kinds == ["texture", "line"] and ok.threshold.pixel_extent == 0.3
    message = error_of(write(tmp_path, "station: s\nmodel: {kind: kmdgan, synthetic_kinds: [speckle]}\n"))
    assert "model.synthetic_kinds" in message and "'texture', 'shading' or 'line'" in message
    assert "pixel_extent" in error_of(write(tmp_path, "station: s\nthreshold: {pixel_extent: 1.5}\n"))


def test_a_fixed_cut_is_checked_and_taken_only_with_its_rule(tmp_path):
    cfg = load_config(write(tmp_path, "station: s\nmodel: {kind: kmdgan, cut_rule: fixed, fixed_cut: [0.7, null]}\n"))
    assert cfg.model.cut_rule == "fixed" and cfg.model.fixed_cut == (0.7, None)
    for bad in ("[0.5, 0.6]", "[1.2, 0.1]", "[0.5, 0]"):
        message = error_of(write(tmp_path, f"station: s\nmodel: {{kind: kmdgan, fixed_cut: {bad}}}\n"))
        assert "fixed_cut" in message and "extent" in message
