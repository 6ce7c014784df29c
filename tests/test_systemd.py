"""The unit file: systemd-analyze verify (where available) and the settings the service relies on."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "edge-inspector@.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_declares_notify_watchdog_restart_and_hardening():
    text = UNIT.read_text()
    service = _unit()["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0 and service["ProtectSystem"] == "strict"
    assert service["StateDirectory"].startswith("edge-inspector/%i")
    assert "LoadCredential=mqtt-password:" in text
    assert "DeviceAllow=char-video4linux rw" in text and "DeviceAllow=/dev/nvidiactl rw" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not available here")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # the installed path of the executable is site-specific: point it at this checkout's
    exe = Path(sys.executable).with_name("edge-inspector")
    unit = tmp_path / "edge-inspector@line1.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-inspector/.venv/bin/edge-inspector", str(exe)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not available here")
def test_unit_exposure_is_at_most_two(tmp_path):
    import re

    unit = tmp_path / "edge-inspector@line1.service"
    unit.write_text(UNIT.read_text())
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                            capture_output=True, text=True, cwd=tmp_path)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout[-500:] + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout
    service = _unit()["Service"]
    assert service["CacheDirectory"].startswith("edge-inspector/%i") and service["UMask"] == "0077"
