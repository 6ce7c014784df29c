import cv2
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from edge_inspector.config import KMDGANModelConfig
from edge_inspector.data.loader import iter_batches
from edge_inspector.model.kmdgan.artefact import load_artefact, save_artefact
from edge_inspector.model.kmdgan.guided_filter import grey, guided_filter, guided_map
from edge_inspector.model.kmdgan.network import KMDGANArchitecture


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32))[None, None]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_on_a_flat_guide_the_filter_is_the_window_mean():
    rng = np.random.default_rng(0)
    src = rng.random((40, 40)).astype(np.float32)
    out = guided_filter(as_tensor(np.full((40, 40), 0.4)), as_tensor(src), radius=3, eps=0.01)[0, 0].numpy()
    # a flat guide has no variance, so a = 0 and q is the mean of the window means (b)
    expected = cv2.blur(cv2.blur(src, (7, 7)), (7, 7))
    assert np.allclose(out[6:-6, 6:-6], expected[6:-6, 6:-6], atol=1e-5)


def test_a_soft_map_of_a_dark_scratch_takes_the_scratchs_outline():
    scratch = np.zeros((64, 64), np.uint8)
    cv2.rectangle(scratch, (26, 30), (38, 33), 1, -1)  # 13 x 4 pixels
    guide = np.where(scratch > 0, 0.3, 0.6).astype(np.float32)
    soft = cv2.GaussianBlur(scratch.astype(np.float32), (0, 0), 3)  # a decoder's soft, rounded response
    soft /= soft.max()
    snapped = guided_filter(as_tensor(guide), as_tensor(soft), radius=4, eps=1e-3)[0, 0].numpy()
    truth = scratch > 0
    assert iou(soft >= 0.5, truth) < 0.65
    assert iou(snapped >= 0.5, truth) > 0.95


def test_a_large_eps_keeps_the_blob_a_smoothed_blob():
    guide = np.full((64, 64), 0.6, np.float32)
    guide[28:36, 28:36] = 0.55  # a faint step, under sqrt(eps)
    yy, xx = np.mgrid[:64, :64]
    blob = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 9.0 ** 2)).astype(np.float32)
    out = guided_filter(as_tensor(guide), as_tensor(blob), radius=2, eps=1.0)[0, 0].numpy()
    assert np.abs(out - blob)[8:-8, 8:-8].max() < 0.05


def test_grey_undoes_the_input_normalisation():
    image = torch.full((1, 3, 4, 4), 0.0)  # normalised 0 is mid-grey
    image[:, :, 0, 0] = 1.0  # white
    g = grey(image)
    assert g.shape == (1, 1, 4, 4) and g[0, 0, 1, 1] == 0.5 and g[0, 0, 0, 0] == 1.0


def test_the_guide_comes_from_the_config_and_is_refused_out_of_range(tiny_kmdgan, tmp_path):
    arch = KMDGANArchitecture.from_config(KMDGANModelConfig(kind="kmdgan", map_guide_radius=4, map_guide_eps=0.002))
    assert (arch.map_guide_radius, arch.map_guide_eps) == (4, 0.002)
    assert KMDGANArchitecture.from_config(KMDGANModelConfig(kind="kmdgan")).map_guide_radius == 0  # off by default
    with pytest.raises(ValidationError, match="map_guide_eps"):
        KMDGANModelConfig(kind="kmdgan", map_guide_eps=0)
    _, model = tiny_kmdgan
    g = model.model
    g.arch.map_guide_radius = 200
    try:
        out = save_artefact(tmp_path / "m.safetensors", g, model.banks, model.threshold, model.input_size,
                            model.meta["training"], model.pixel_threshold, model.pixel_extent)
    finally:
        g.arch.map_guide_radius = 0
    with pytest.raises(Exception, match="map_guide radius 200"):
        load_artefact(out)


def test_the_models_map_is_the_guided_blend_in_torch_and_in_onnx_runtime(tiny_kmdgan, tmp_path):
    from edge_inspector.runtime.export import export_onnx
    from edge_inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

    split, model = tiny_kmdgan
    g = model.model
    images = next(iter(iter_batches(split.test_anomalous[:4], model.input_size, 4))).images
    x = torch.from_numpy(images)
    with torch.no_grad():
        plain, score = g(x, *model.banks)
        g.arch.map_guide_radius, g.arch.map_guide_eps = 4, 0.001
        try:
            guided, guided_score = g(x, *model.banks)
            out = save_artefact(tmp_path / "m.safetensors", g, model.banks, model.threshold, model.input_size,
                                model.meta["training"], model.pixel_threshold, model.pixel_extent)
        finally:
            g.arch.map_guide_radius, g.arch.map_guide_eps = 0, 0.01
    assert torch.allclose(guided, guided_map(x, plain[:, None], 4, 0.001)[:, 0], atol=1e-6)
    assert not torch.allclose(guided, plain, atol=1e-3)
    assert torch.equal(score, guided_score)  # the image score does not read the map
    loaded = load_artefact(out)
    assert (loaded.model.arch.map_guide_radius, loaded.model.arch.map_guide_eps) == (4, 0.001)
    path = export_onnx(loaded, tmp_path / "guided.onnx")
    maps, _ = OnnxRuntimeBackend(path, [b.numpy() for b in loaded.banks]).infer(images)
    assert np.abs(maps - guided.numpy()).max() <= 1e-3
