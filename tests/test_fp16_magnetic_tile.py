"""An FP16 graph on Magnetic Tile, in ONNX Runtime on this CPU, against FP32 PyTorch: a small
KMDGAN trained on part of the training split, checked on part of the test split (the whole split
with the figures of record: docs/benchmarks.md). Runs in CI, where the data is; skips elsewhere."""

import numpy as np
import pytest

from edge_inspector.config import KMDGANModelConfig
from edge_inspector.data import load_split
from edge_inspector.data.loader import iter_batches
from edge_inspector.errors import UserError
from edge_inspector.model.kmdgan.training import train_kmdgan
from edge_inspector.runtime.export import export_checked, export_onnx
from edge_inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend
from edge_inspector.runtime.parity import compare
from edge_inspector.runtime.torch_backend import TorchBackend


def test_fp16_changes_only_verdicts_at_the_threshold_and_export_refuses_those(magnetic_tile, tmp_path):
    split = load_split("magnetic-tile", magnetic_tile)
    split.train_normal = split.train_normal[:60]
    cfg = KMDGANModelConfig(kind="kmdgan", input_size=128, bank_size=2000, iterations=30, batch_size=6)
    model = train_kmdgan(split, cfg, tmp_path / "mt.safetensors", target_false_reject_rate=0.1, progress=False)
    test = split.test_normal[:24] + split.test_anomalous[:24]
    images = np.concatenate([b.images for b in iter_batches(test, 128, 8)])
    graph = tmp_path / "mt.fp16.onnx"
    export_onnx(model, graph, precision="fp16")
    fp16 = OnnxRuntimeBackend(graph, [b.numpy() for b in model.banks])
    figures, ref_scores, scores = compare(TorchBackend(model), fp16, images, model.threshold, "fp16")
    assert figures["max_map_difference"] <= figures["map_tolerance"]
    assert figures["max_score_difference"] <= figures["score_tolerance"]
    # FP16 may move a verdict only where the FP32 score lies within FP16's own score error of the
    # threshold (the whole split's run changed 3 of 573 such verdicts: docs/benchmarks.md)
    flipped = (ref_scores >= model.threshold) != (scores >= model.threshold)
    assert (np.abs(ref_scores[flipped] - model.threshold) <= np.abs(ref_scores - scores).max()).all()
    assert figures["differing_verdicts_max_margin"] <= figures["max_absolute_score_difference"]
    # and the export never leaves such a graph to be used: it refuses it, naming the count
    if flipped.any():
        with pytest.raises(UserError, match=f"{int(flipped.sum())} of 48 verdicts differ .*within"):
            export_checked(model, graph, images, precision="fp16")
        assert not graph.exists()
    else:
        assert export_checked(model, graph, images, precision="fp16")["verdicts_differing"] == 0
