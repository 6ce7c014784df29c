"""Inference backends behind one interface (runtime.base.Backend), one module each.

A backend whose library is missing is listed as unavailable with the reason; choosing it gives
one line. TensorRT is not built yet (issue 4).
"""

from __future__ import annotations

import importlib

from edge_inspector.errors import UserError

LIBRARIES = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}


def available() -> dict[str, str | None]:
    """Each backend's name -> None where it can run here, else the reason it cannot."""
    out = {}
    for name, lib in LIBRARIES.items():
        try:
            importlib.import_module(lib)
            out[name] = None if name != "tensorrt" else "the TensorRT backend is not built yet"
        except ImportError as exc:
            out[name] = f"{lib} is not installed ({exc})"
    return out


def require(name: str) -> None:
    reason = available().get(name, f"unknown backend {name!r}; expected one of {', '.join(LIBRARIES)}")
    if reason:
        raise UserError(f"backend {name} unavailable: {reason}")
