"""Export a model artefact to ONNX, and check the exported graph against PyTorch before success."""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from edge_inspector.artefact import LoadedModel
from edge_inspector.errors import UserError
from edge_inspector.model.memory_bank import pad_bank
from edge_inspector.runtime.base import Backend

log = logging.getLogger(__name__)

OPSET = 17
# bumped whenever the exported graph changes shape or inputs (2: bank searched in row blocks):
# a graph exported by an older edge-inspector is exported again, not fed what it does not expect
GRAPH_REVISION = 2
# max |difference| of anomaly-map probabilities. Not 1e-3: the two runtimes sum the distance
# matmul in a different order, so a location whose two nearest bank rows are almost equally near
# can take the other one; on the 573 Magnetic Tile test images that moved a map value by up to
# 1.5e-3 (docs/benchmarks.md), with every verdict the same
MAP_TOLERANCE = 5e-3
SCORE_TOLERANCE = 1e-3  # max |difference| of image scores, relative to max(1, |score|)
PIXEL_LEVEL = 0.5  # the service's default pixel_threshold


def bank_input_names(model: LoadedModel) -> list[str]:
    return [f"memory_stride{s}" for s in model.model.matched]


def bank_locations(model: LoadedModel) -> dict[str, int]:
    """Bank input name -> feature-map locations per image at its stride (queries per image)."""
    return {n: (model.input_size // s) ** 2 for n, s in zip(bank_input_names(model), model.model.matched)}


def ensure_onnx(model: LoadedModel, onnx_path: Path | None = None) -> Path:
    """The artefact's ONNX graph, exported and parity-checked unless a current one is there.

    A sidecar JSON records the artefact's hash and the graph revision: a retrained artefact, or a
    newer edge-inspector whose graph differs, gets a fresh graph.
    """
    if onnx_path is None:
        if model.path is None:
            raise UserError("an in-memory model needs an ONNX path to export to")
        onnx_path = Path(model.path).with_suffix(".onnx")
    onnx_path = Path(onnx_path)
    sidecar = onnx_path.with_suffix(".onnx.json")
    digest = model.meta.get("sha256")
    if onnx_path.is_file() and sidecar.is_file():
        try:
            recorded = json.loads(sidecar.read_text())
            if recorded.get("artefact_sha256") == digest and recorded.get("graph_revision") == GRAPH_REVISION:
                return onnx_path
        except ValueError:
            pass  # an unreadable sidecar: export again
    log.info("exporting %s to ONNX (parity is checked first)", onnx_path)
    figures = export_checked(model, onnx_path, parity_images(model.input_size))
    sidecar.write_text(json.dumps({"artefact_sha256": digest, "graph_revision": GRAPH_REVISION, "parity": figures},
                                  indent=2) + "\n")
    return onnx_path


def export_checked(model: LoadedModel, out: Path, images: np.ndarray) -> dict:
    """export_onnx, then parity with PyTorch in ONNX Runtime on images; a graph that does not match
    is removed (never left behind to be used) and the mismatch raised with its figures."""
    from edge_inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from edge_inspector.runtime.torch_backend import TorchBackend

    export_onnx(model, out)
    try:
        return check_parity(TorchBackend(model), OnnxRuntimeBackend(out, [b.numpy() for b in model.banks]), images,
                            model.threshold)
    except UserError:
        Path(out).unlink(missing_ok=True)
        raise


def export_onnx(model: LoadedModel, out: Path, opset: int = OPSET) -> Path:
    """One graph: normalisation -> backbone -> memory matching -> fusion -> decoder -> map and score.

    The memory banks are inputs with a dynamic row count, so a recalibrated bank needs no re-export;
    their rows are a whole number of ROW_BLOCK blocks (the backends pad them with pad_bank).
    """
    import onnx

    graph = copy.deepcopy(model.model).eval()
    graph.chunk = None  # one matmul over the whole bank: no slicing that would fix its size
    size = model.input_size
    image = torch.zeros(1, 3, size, size)
    names = bank_input_names(model)
    dynamic = {"image": {0: "batch"}, "anomaly_map": {0: "batch"}, "image_score": {0: "batch"}}
    dynamic.update({n: {0: f"{n}_rows"} for n in names})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints taken from shapes
        banks = [torch.from_numpy(pad_bank(b.numpy())) for b in model.banks]
        torch.onnx.export(graph, (image, *banks), str(out), dynamo=False, opset_version=opset,
                          input_names=["image", *names], output_names=["anomaly_map", "image_score"],
                          dynamic_axes=dynamic)
    onnx.checker.check_model(str(out))
    return out


def check_parity(reference: Backend, candidate: Backend, images: np.ndarray, threshold: float) -> dict:
    """Maps and scores of candidate against reference; raises with the figures where they differ."""
    ref_maps, ref_scores, maps, scores = [], [], [], []
    for i in range(len(images)):  # batch 1: what a line PC runs
        m, s = reference.infer(images[i : i + 1])
        ref_maps.append(m)
        ref_scores.append(s)
        m, s = candidate.infer(images[i : i + 1])
        maps.append(m)
        scores.append(s)
    ref_maps, maps = np.concatenate(ref_maps), np.concatenate(maps)
    ref_scores, scores = np.concatenate(ref_scores), np.concatenate(scores)
    map_diff = float(np.abs(ref_maps - maps).max())
    score_diff = float((np.abs(ref_scores - scores) / np.maximum(1.0, np.abs(ref_scores))).max())
    verdicts_differ = int(((ref_scores >= threshold) != (scores >= threshold)).sum())
    # what a map difference can change downstream: pixels on the other side of the default level
    crossing = int(((ref_maps >= PIXEL_LEVEL) != (maps >= PIXEL_LEVEL)).sum())
    figures = {"images": len(images), "max_map_difference": map_diff, "max_score_difference": score_diff,
               "verdicts_differing": verdicts_differ, "pixels_crossing_0.5": crossing, "pixels": int(maps.size),
               "map_tolerance": MAP_TOLERANCE, "score_tolerance": SCORE_TOLERANCE}
    if map_diff > MAP_TOLERANCE or score_diff > SCORE_TOLERANCE or verdicts_differ:
        raise UserError(f"{candidate.name} does not match {reference.name}: max map difference {map_diff:.2e} "
                        f"(tolerance {MAP_TOLERANCE:.0e}), max score difference {score_diff:.2e} (tolerance "
                        f"{SCORE_TOLERANCE:.0e}), {verdicts_differ} of {len(images)} verdicts differ")
    return figures


def parity_images(size: int, count: int = 8, seed: int = 0) -> np.ndarray:
    """Synthetic parts, half with defects: what export checks parity on when no images are named."""
    from edge_inspector.data.synthetic_product import DEFECT_TYPES, _draw_defect, make_part
    from edge_inspector.imageio import to_tensor_layout

    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        part = make_part(rng, size)
        if i % 2:
            part, _ = _draw_defect(part, DEFECT_TYPES[i % len(DEFECT_TYPES)], rng)
        images.append(np.repeat(part[:, :, None], 3, axis=2))
    return to_tensor_layout(images)
