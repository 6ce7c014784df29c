import numpy as np
import pytest
import torch

from edge_inspector.cli import main
from edge_inspector.data.loader import iter_batches
from edge_inspector.errors import UserError
from edge_inspector.runtime import available, require
from edge_inspector.runtime.export import export_onnx
from edge_inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend
from edge_inspector.runtime.parity import check_parity
from edge_inspector.runtime.torch_backend import TorchBackend


@pytest.fixture(scope="module")
def exported(tiny_kmdgan, tmp_path_factory):
    split, model = tiny_kmdgan
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return split, model, path


def test_onnx_graph_is_checked_and_names_its_outputs(exported):
    import onnx

    _, _, path = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert [o.name for o in graph.graph.output] == ["anomaly_map", "image_score"]
    assert [i.name for i in graph.graph.input] == ["image", "memory_stride8", "memory_stride16"]
    assert graph.opset_import[0].version >= 17


def test_onnxruntime_matches_torch_on_the_test_split(exported):
    split, model, path = exported
    images = np.concatenate([b.images for b in iter_batches(split.test, 128, 8)])
    torch_backend = TorchBackend(model)
    ort_backend = OnnxRuntimeBackend(path, [b.numpy() for b in model.banks])
    figures = check_parity(torch_backend, ort_backend, images, model.threshold)
    assert figures["verdicts_differing"] == 0 and figures["images"] == len(split.test)
    assert figures["max_map_difference"] <= 1e-3


def test_parity_check_fails_with_figures_on_a_mismatch(exported):
    split, model, path = exported
    images = np.concatenate([b.images for b in iter_batches(split.test[:4], 128, 4)])
    wrong = OnnxRuntimeBackend(path, [b.numpy() * 1.5 for b in model.banks])  # another memory entirely
    with pytest.raises(UserError, match=r"max map difference .* verdicts differ"):
        check_parity(TorchBackend(model), wrong, images, model.threshold)


def test_swapping_the_bank_needs_no_reexport(exported):
    split, model, path = exported
    images = np.concatenate([b.images for b in iter_batches(split.test_anomalous[:3], 128, 3)])
    banks = [b.numpy() for b in model.banks]
    ort_backend = OnnxRuntimeBackend(path, banks)
    _, before = ort_backend.infer(images)
    # a bank that also remembers these very images' features: their distances, so scores, must drop
    with torch.no_grad():
        feats = model.model.features(torch.from_numpy(images))
    extra = [feats[{8: 1, 16: 2}[s]].permute(0, 2, 3, 1).reshape(-1, b.shape[1]).numpy()
             for s, b in zip(model.model.matched, banks)]
    grown = [np.concatenate([b, e]) for b, e in zip(banks, extra)]  # more rows than at export
    ort_backend.swap_banks(grown)
    _, after = ort_backend.infer(images)
    assert (after < before).all()
    torch_backend = TorchBackend(model)
    torch_backend.swap_banks(grown)
    assert np.allclose(torch_backend.infer(images)[1], after, atol=1e-3)
    ort_backend.swap_banks(banks)
    assert np.allclose(ort_backend.infer(images)[1], before, atol=1e-5)


def test_unavailable_backend_is_one_line():
    assert available()["onnxruntime"] is None and available()["torch"] is None
    with pytest.raises(UserError) as info:
        require("tensorrt")
    assert "\n" not in str(info.value) and "tensorrt" in str(info.value)


def test_export_verb(exported, tmp_path, capsys):
    _, model, _ = exported
    out = tmp_path / "cli.onnx"
    assert main(["export", "--artefact", str(model.path), "--out", str(out)]) == 0
    assert out.is_file() and "verdicts differing 0" in capsys.readouterr().out
    if available()["tensorrt"]:  # where TensorRT is absent the choice is refused in one line
        assert main(["export", "--artefact", str(model.path), "--format", "tensorrt"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "backend tensorrt unavailable" in err


def test_ensure_onnx_reuses_a_current_graph_and_reexports_a_stale_one(exported, tmp_path):
    from edge_inspector.runtime.export import ensure_onnx

    _, model, _ = exported
    path = tmp_path / "auto.onnx"
    assert ensure_onnx(model, path) == path and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert ensure_onnx(model, path) == path and path.stat().st_mtime_ns == stamp  # reused
    sidecar = path.with_suffix(".onnx.json")
    sidecar.write_text(sidecar.read_text().replace(model.meta["sha256"], "0" * 64))  # another artefact's
    ensure_onnx(model, path)
    assert model.meta["sha256"] in sidecar.read_text()
    # a graph an older edge-inspector exported (no revision recorded) is exported again
    import json

    record = json.loads(sidecar.read_text())
    del record["graph_revision"]
    sidecar.write_text(json.dumps(record))
    stamp = path.stat().st_mtime_ns
    ensure_onnx(model, path)
    assert path.stat().st_mtime_ns != stamp and "graph_revision" in json.loads(sidecar.read_text())


def test_open_backend_gives_ready_backends_that_agree(exported, tmp_path):
    from edge_inspector.runtime import open_backend

    split, model, _ = exported
    images = np.concatenate([b.images for b in iter_batches(split.test[:4], 128, 4)])
    maps_t, scores_t = open_backend("torch", model).infer(images)
    maps_o, scores_o = open_backend("onnxruntime", model, onnx_path=tmp_path / "o.onnx").infer(images)
    assert np.abs(maps_t - maps_o).max() < 1e-3 and np.allclose(scores_t, scores_o, atol=1e-3)
    with pytest.raises(UserError, match="unknown backend"):
        open_backend("openvino", model)


def test_bench_verb_times_each_backend_in_one_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--size", "64", "--bank-size", "500", "--runs", "3", "--batches", "1", "2",
                 "--workdir", str(tmp_path), "--json", str(out), "--stages"]) == 0
    import json

    report = json.loads(out.read_text())
    for name in ("torch", "onnxruntime"):
        r = report["results"][name]
        assert r["p99_ms"] >= r["p50_ms"] > 0 and set(r["throughput"]) == {"1", "2"} and r["peak_rss_mb"] > 50
    trt = report["results"]["tensorrt"]  # measured where it runs, else the reason it cannot
    assert "p50_ms" in trt or trt["unavailable"] == available()["tensorrt"]
    assert all(v > 0 for v in report["stages_ms"].values()) and all(v > 0 for v in report["stages_gflop"].values())
    # what is timed is built as train builds a model by default: map blend and positional profile on
    assert report["architecture"]["map_blend"] == "geometric" and report["architecture"]["position_sides"] == [8, 4]
    assert "| onnxruntime |" in capsys.readouterr().out


def test_bench_with_a_backend_that_cannot_load_reports_it_and_finishes(tmp_path, capsys):
    # every process fails to load the corrupt artefact: the round robin must still end, with reasons
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    out = tmp_path / "bench.json"
    assert main(["bench", "--backend", "torch", "--artefact", str(bad), "--runs", "2", "--batches", "1",
                 "--workdir", str(tmp_path), "--json", str(out)]) == 0
    import json

    r = json.loads(out.read_text())["results"]["torch"]
    assert "error" in r and str(bad) in r["error"]


def test_the_bank_search_is_fp16_safe(exported):
    """Pad rows (1e4 in every channel: a squared norm of 1e8 x channels, far past half precision's
    65504) in an FP16 network: the search runs in FP32, finds the real nearest row, never a pad."""
    from edge_inspector.model.memory_bank.search import nearest, pad_bank

    _, model, _ = exported
    bank = torch.from_numpy(pad_bank(model.banks[0].numpy()[:300]))  # 300 rows + 84 pad rows
    queries = model.banks[0][:300].half() + 0.01  # near their own rows, in half precision
    for chunk in (None, 128):
        d, idx = nearest(queries, bank, chunk=chunk)
        assert torch.isfinite(d).all() and (idx < 300).all()
        assert (idx == torch.arange(300)).float().mean() > 0.95  # each finds (almost always) its own row


def test_an_fp16_graph_matches_fp32_verdicts_in_onnx_runtime(exported, tmp_path):
    from edge_inspector.runtime.export import export_checked

    split, model, _ = exported
    images = np.concatenate([b.images for b in iter_batches(split.test, 128, 8)])
    figures = export_checked(model, tmp_path / "half.onnx", images, precision="fp16")
    assert figures["precision"] == "fp16" and figures["verdicts_differing"] == 0
    assert figures["max_map_difference"] <= figures["map_tolerance"]
    import onnx

    kinds = {t.data_type for t in onnx.load(str(tmp_path / "half.onnx")).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds  # the weights really are half precision


def test_int8_is_refused_in_one_line(exported, capsys):
    _, model, _ = exported
    assert main(["export", "--artefact", str(model.path), "--int8"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Q/DQ" in err
