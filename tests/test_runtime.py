import numpy as np
import pytest
import torch

from edge_inspector.cli import main
from edge_inspector.data.loader import iter_batches
from edge_inspector.errors import UserError
from edge_inspector.export import check_parity, export_onnx
from edge_inspector.runtime import available, require
from edge_inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend
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
    assert main(["export", "--artefact", str(model.path), "--format", "tensorrt"]) == 3
