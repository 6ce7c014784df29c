"""Export a model artefact to ONNX, check the graph against PyTorch (parity) before success, and
keep it current beside the artefact."""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from edge_inspector.errors import UserError
from edge_inspector.model.kmdgan.artefact import LoadedModel
from edge_inspector.model.memory_bank.search import pad_bank
from edge_inspector.runtime.parity import check_parity, parity_images

log = logging.getLogger(__name__)

OPSET = 17
PRECISIONS = ("fp32", "fp16")
# bumped whenever the exported graph changes shape or inputs (2: bank searched in row blocks):
# a graph exported by an older edge-inspector is exported again, not fed what it does not expect
GRAPH_REVISION = 2


def bank_input_names(model: LoadedModel) -> list[str]:
    return [f"memory_stride{s}" for s in model.model.matched]


def bank_locations(model: LoadedModel) -> dict[str, int]:
    """Bank input name -> feature-map locations per image at its stride (queries per image)."""
    return {n: (model.input_size // s) ** 2 for n, s in zip(bank_input_names(model), model.model.matched)}


def ensure_onnx(model: LoadedModel, onnx_path: Path | None = None, precision: str = "fp32") -> Path:
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
            if recorded.get("artefact_sha256") == digest and recorded.get("graph_revision") == GRAPH_REVISION \
                    and recorded.get("precision", "fp32") == precision:
                return onnx_path
        except ValueError:
            pass  # an unreadable sidecar: export again
    log.info("exporting %s to ONNX (parity is checked first)", onnx_path)
    try:
        figures = export_checked(model, onnx_path, parity_images(model.input_size), precision)
        sidecar.write_text(json.dumps({"artefact_sha256": digest, "graph_revision": GRAPH_REVISION,
                                       "precision": precision, "parity": figures}, indent=2) + "\n")
    except OSError as exc:  # a read-only or full location: one line that names it
        raise UserError(f"cannot write the exported graph {onnx_path}: {exc.strerror or exc}") from None
    return onnx_path


class HalfPrecision(torch.nn.Module):
    """The decoder in FP16 behind FP32 inputs and outputs. The backbone, the bank search and the
    memory distances stay FP32: a backbone feature rounded to half precision can take another
    nearest bank row than in FP32 (on Magnetic Tile that flipped 3 of 573 verdicts), and the
    distances are standardised by small spreads. The precision is in the graph, for a strongly
    typed TensorRT build."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator.half()
        self.generator.backbone.float()
        self.generator.float_buffers()

    def forward(self, image: torch.Tensor, *banks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        amap, score = self.generator(image, *banks)
        return amap.float(), score.float()


def export_onnx(model: LoadedModel, out: Path, opset: int = OPSET, precision: str = "fp32") -> Path:
    """One graph: normalisation -> backbone -> memory matching -> fusion -> decoder -> map and score.

    The memory banks are inputs with a dynamic row count, so a recalibrated bank needs no re-export;
    their rows are a whole number of ROW_BLOCK blocks (the backends pad them with pad_bank).
    precision fp16: the layers in half precision, inputs, outputs and the bank search in float32.
    """
    import onnx

    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    graph = copy.deepcopy(model.model).eval()
    graph.chunk = None  # one matmul over the whole bank: no slicing that would fix its size
    if precision == "fp16":
        graph = HalfPrecision(graph)
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


def export_checked(model: LoadedModel, out: Path, images: np.ndarray, precision: str = "fp32") -> dict:
    """export_onnx, then parity with PyTorch in ONNX Runtime on images; a graph that does not match
    is removed (never left behind to be used) and the mismatch raised with its figures."""
    from edge_inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from edge_inspector.runtime.torch_backend import TorchBackend

    export_onnx(model, out, precision=precision)
    try:
        return check_parity(TorchBackend(model), OnnxRuntimeBackend(out, [b.numpy() for b in model.banks]), images,
                            model.threshold, precision, model.pixel_threshold)
    except UserError:
        Path(out).unlink(missing_ok=True)
        raise
