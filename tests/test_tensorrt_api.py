"""The TensorRT API the builder and backend use: every call is in the checked list, nothing that
TensorRT 11 removed is used, and the list itself is checked against bindings wheels where they
are installed (docs/benchmarks.md records the versions checked)."""

import ast
import glob
import re
from pathlib import Path

import pytest

from edge_inspector.runtime import tensorrt_api

RUNTIME = Path(__file__).resolve().parents[1] / "edge_inspector" / "runtime"
SOURCES = [RUNTIME / "tensorrt_engine.py", RUNTIME / "tensorrt_backend.py"]
RECEIVERS = r"(?:trt|builder|config|parser|profile|network|self\.engine|self\.context|self\.runtime|"\
            r"trt\.\w+)"


def used_in_source() -> set[str]:
    names = set()
    for path in SOURCES:
        text = path.read_text()
        names |= set(re.findall(rf"\b{RECEIVERS}\.([A-Za-z_]\w*)", text))
    return {n for n in names if not n.startswith("__")}


def attributes_in_code(path: Path) -> set[str]:
    """Every attribute name the code (not its comments or docstrings) touches."""
    return {node.attr for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}


def test_every_tensorrt_call_of_the_builder_and_backend_is_in_the_checked_list():
    listed = {n for _, n in tensorrt_api.USED}
    unlisted = used_in_source() - listed
    assert not unlisted, f"TensorRT names used but not checked against the wheels: {sorted(unlisted)}"


def test_nothing_tensorrt_11_removed_is_used():
    for path in SOURCES:
        touched = attributes_in_code(path)
        assert not touched & {*tensorrt_api.REMOVED_IN_11, "BuilderFlag", "set_flag"}, path.name


def test_the_name_check_finds_a_name_merged_into_a_longer_string(tmp_path):
    so = tmp_path / "fake.so"
    so.write_bytes(b"\0CONDITIONAL_INPUT\0execute_async_v3\0IInt8EntropyCalibrator2\0")
    assert tensorrt_api.declares(so.read_bytes(), "INPUT")
    assert not tensorrt_api.declares(so.read_bytes(), "set_tensor_address")
    result = tensorrt_api.check(so)
    assert "set_tensor_address" in result["missing"] and "execute_async_v3" not in result["missing"]
    assert result["still_declared_removed"] == ["IInt8EntropyCalibrator2"]


WHEELS = sorted(glob.glob("/tmp/trt*/lib/python3*/site-packages/tensorrt_bindings/tensorrt.so"))


@pytest.mark.skipif(not WHEELS, reason="no tensorrt bindings wheel installed in /tmp/trt*/ (tools/check_tensorrt_api.py)")
@pytest.mark.parametrize("so", WHEELS)
def test_installed_bindings_declare_everything_used(so):
    assert tensorrt_api.check(Path(so))["missing"] == []
