"""Inference backends behind one interface (runtime.base.Backend), one module each.

A backend whose library is missing is listed as unavailable with the reason; choosing it gives
one line.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from edge_inspector.errors import UserError

BACKENDS = ("torch", "onnxruntime", "tensorrt")
LIBRARIES = {"torch": ["torch"], "onnxruntime": ["onnxruntime", "onnx"], "tensorrt": ["tensorrt", "onnx"]}


def available() -> dict[str, str | None]:
    """Each backend's name -> None where it can run here, else the reason it cannot."""
    out = {}
    for name, libs in LIBRARIES.items():
        out[name] = None
        for lib in libs:
            try:
                importlib.import_module(lib)
            except ImportError as exc:
                out[name] = f"{lib} is not installed ({exc})"
                break
    if out["tensorrt"] is None:
        from edge_inspector.runtime import cuda_memory

        out["tensorrt"] = None if cuda_memory.cudart is not None else "cuda-python is not installed"
    return out


def require(name: str) -> None:
    reason = available().get(name, f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if reason:
        raise UserError(f"backend {name} unavailable: {reason}")


def check_device(device: str) -> None:
    """One line for a device this machine does not have (runtime.device)."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise UserError(f"runtime.device {device!r}: not a device; expected cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"runtime.device {device}: no CUDA device here (this machine or its torch build has none)")


def precision_for(name: str, device: str, precision: str = "auto") -> str:
    """auto: fp32 everywhere for now. An FP16 graph changed 3 of 573 Magnetic Tile verdicts
    (docs/benchmarks.md): FP16 is there to be chosen, and its parity check refuses a model it
    changes the verdicts of."""
    return "fp32" if precision == "auto" else precision


def open_backend(name: str, model, device: str = "cpu", onnx_path: Path | None = None, precision: str = "auto",
                 **engine_options):
    """A ready backend for a loaded model artefact. ONNX Runtime and TensorRT use the exported graph
    (onnx_path, default beside the artefact), exported with its parity check when missing or stale."""
    from edge_inspector.model.memory_bank.search import pad_bank

    require(name)
    check_device(device)
    banks = [pad_bank(b.numpy()) for b in model.banks]  # for the exported graph's block search
    if name == "torch":
        from edge_inspector.runtime.torch_backend import TorchBackend

        return TorchBackend(model, device, fp16=precision_for(name, device, precision) == "fp16")
    from edge_inspector.runtime.export import ensure_onnx

    onnx_path = ensure_onnx(model, onnx_path, precision_for(name, device, precision))
    if name == "onnxruntime":
        from edge_inspector.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_path, banks, device)
    from edge_inspector.runtime.export import bank_input_names, bank_locations
    from edge_inspector.runtime.tensorrt_backend import TensorRTBackend
    from edge_inspector.runtime.tensorrt_engine import build_engine

    engine = build_engine(onnx_path, dict(zip(bank_input_names(model), banks)), model.input_size,
                          bank_locations(model), **engine_options)
    return TensorRTBackend(engine, banks)
