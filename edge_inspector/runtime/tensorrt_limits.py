"""TensorRT's hard limits, checked on the ONNX graph before a build is attempted.

Pure Python over the ONNX file, so the checks run (and are tested) where TensorRT is absent:
TopK's k must be <= 3840, and no tensor may hold 2^31 elements or more. The largest tensor of
our graph is the query x bank distance matrix of each matched stride; its size is bounded by the
engine profile's largest batch and bank, so the profile is what gets checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_inspector.errors import UserError

MAX_TOPK = 3840
MAX_ELEMENTS = 2**31 - 1


def topk_values(onnx_path: Path) -> list[int]:
    """The constant k of every TopK node in the graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    ks = []
    for node in graph.node:
        if node.op_type == "TopK":
            k = consts.get(node.input[1])
            if k is None:
                raise UserError(f"{onnx_path}: TopK node {node.name} has a computed k; TensorRT needs it <= "
                                f"{MAX_TOPK} and this graph cannot show that")
            ks.append(int(np.asarray(k).reshape(-1)[0]))
    return ks


def check_limits(onnx_path: Path, locations: dict[str, int], max_batch: int, max_rows: dict[str, int]) -> None:
    """Refuse, with the figures, a graph or profile that TensorRT would reject or overflow.

    locations: bank input name -> feature-map locations per image at that stride;
    max_rows: bank input name -> the largest bank the engine profile admits.
    """
    for k in topk_values(onnx_path):
        if k > MAX_TOPK:
            raise UserError(f"{onnx_path}: TopK with k={k} exceeds TensorRT's limit of {MAX_TOPK}; "
                            "lower the model's top_k")
    for name, per_image in locations.items():
        elements = max_batch * per_image * max_rows[name]
        if elements > MAX_ELEMENTS:
            fit = MAX_ELEMENTS // (max_batch * per_image)
            raise UserError(f"{name}: a batch of {max_batch} against {max_rows[name]} bank rows makes a "
                            f"{elements:,}-element distance matrix, over TensorRT's 2^31 limit; use at most "
                            f"{fit:,} rows at this batch (model.bank_size) or a smaller --max-batch")
