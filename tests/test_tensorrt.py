"""TensorRT: the limit checks run everywhere (pure Python over the real ONNX graph); building and running an engine runs where tensorrt imports, and skips elsewhere."""

import numpy as np
import pytest

from edge_inspector.errors import UserError
from edge_inspector.runtime import available
from edge_inspector.runtime.export import bank_input_names, bank_locations, export_onnx
from edge_inspector.runtime.tensorrt_limits import MAX_TOPK, check_limits, topk_values


@pytest.fixture(scope="module")
def graph(tiny_kmdgan, tmp_path_factory):
    split, model = tiny_kmdgan
    return split, model, export_onnx(model, tmp_path_factory.mktemp("trt") / "tiny.onnx")


def test_topk_of_the_graph_is_found_and_within_tensorrts_limit(graph):
    _, model, path = graph
    ks = topk_values(path)
    assert model.model.arch.top_k in ks and max(ks) <= MAX_TOPK


def test_a_profile_past_two_to_the_31_elements_is_refused_with_the_figures(graph):
    _, model, path = graph
    locations = bank_locations(model)
    assert locations == {"memory_stride8": 16 * 16, "memory_stride16": 8 * 8}  # 128 px input
    check_limits(path, locations, 8, {n: 20000 for n in locations})
    with pytest.raises(UserError, match=r"memory_stride8: a batch of 64 .* over TensorRT's 2\^31 limit; use at most"):
        check_limits(path, locations, 64, {n: 200_000 for n in locations})


@pytest.mark.skipif(bool(available()["tensorrt"]), reason=f"TensorRT backend unavailable here: {available()['tensorrt']}")
def test_tensorrt_engine_matches_torch_and_swaps_banks(graph):
    import torch

    from edge_inspector.data.loader import iter_batches
    from edge_inspector.model.memory_bank.search import pad_bank
    from edge_inspector.runtime.parity import check_parity
    from edge_inspector.runtime.tensorrt_backend import TensorRTBackend
    from edge_inspector.runtime.tensorrt_engine import build_engine
    from edge_inspector.runtime.torch_backend import TorchBackend

    if not torch.cuda.is_available():
        pytest.skip("tensorrt imports but no CUDA device is visible")
    split, model, path = graph
    banks = [b.numpy() for b in model.banks]
    engine = build_engine(path, dict(zip(bank_input_names(model), banks)), model.input_size,
                          bank_locations(model))
    padded = [pad_bank(b) for b in banks]  # as the service passes them: the same engine
    assert build_engine(path, dict(zip(bank_input_names(model), padded)), model.input_size,
                        bank_locations(model)) == engine  # from the cache
    backend = TensorRTBackend(engine, banks)
    images = np.concatenate([b.images for b in iter_batches(split.test, 128, 8)])
    figures = check_parity(TorchBackend(model, "cuda", fp16=False), backend, images, model.threshold)
    assert figures["verdicts_differing"] == 0
    _, before = backend.infer(images[:2])
    backend.swap_banks([b * 1.5 for b in banks])
    _, after = backend.infer(images[:2])
    assert not np.allclose(before, after)


def test_export_and_service_name_the_same_engine(graph):
    from edge_inspector.model.memory_bank.search import pad_bank
    from edge_inspector.runtime.tensorrt_engine import engine_path, engine_spec

    _, model, path = graph
    names = bank_input_names(model)
    raw = dict(zip(names, [b.numpy() for b in model.banks]))  # what export passes
    padded = {n: pad_bank(b) for n, b in raw.items()}  # what the service passes
    assert any(b.shape[0] != padded[n].shape[0] for n, b in raw.items())  # the two really differ
    spec = engine_spec(path, raw, "GPU", "11.4.0", "12.8")
    assert spec == engine_spec(path, padded, "GPU", "11.4.0", "12.8")
    assert engine_path(path, spec) != engine_path(path, engine_spec(path, raw, "GPU", "10.16.1", "12.8"))


def test_an_unsupported_tensorrt_is_refused_in_one_line(monkeypatch):
    from types import SimpleNamespace

    from edge_inspector.runtime import tensorrt_engine

    monkeypatch.setattr(tensorrt_engine, "trt", SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(UserError, match=r"TensorRT 8.6.1 is not supported: .*10.x \(JetPack\) or 11.x"):
        tensorrt_engine.tensorrt_major()
    monkeypatch.setattr(tensorrt_engine, "trt", SimpleNamespace(__version__="11.4.0.106"))
    assert tensorrt_engine.tensorrt_major() == 11

