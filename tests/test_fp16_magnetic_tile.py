"""An FP16 graph on Magnetic Tile, in ONNX Runtime on this CPU, against FP32 PyTorch: a small
KMDGAN trained on part of the training split, checked on part of the test split (the whole split
with the figures of record: docs/benchmarks.md). Runs in CI, where the data is; skips elsewhere."""

import numpy as np

from edge_inspector.config import KMDGANModelConfig
from edge_inspector.data import load_split
from edge_inspector.data.loader import iter_batches
from edge_inspector.model.kmdgan.training import train_kmdgan
from edge_inspector.runtime.export import export_checked


def test_fp16_verdicts_equal_fp32_on_magnetic_tile(magnetic_tile, tmp_path):
    split = load_split("magnetic-tile", magnetic_tile)
    split.train_normal = split.train_normal[:60]
    cfg = KMDGANModelConfig(kind="kmdgan", input_size=128, bank_size=2000, iterations=30, batch_size=6)
    model = train_kmdgan(split, cfg, tmp_path / "mt.safetensors", target_false_reject_rate=0.1, progress=False)
    test = split.test_normal[:24] + split.test_anomalous[:24]
    images = np.concatenate([b.images for b in iter_batches(test, 128, 8)])
    figures = export_checked(model, tmp_path / "mt.fp16.onnx", images, precision="fp16")
    assert figures["images"] == 48 and figures["verdicts_differing"] == 0
    assert figures["max_map_difference"] <= figures["map_tolerance"]
    assert figures["max_score_difference"] <= figures["score_tolerance"]
