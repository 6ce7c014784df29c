"""`edge-inspector export`: ONNX (checked, parity with PyTorch) or a cached TensorRT engine built from it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from edge_inspector.config import DatasetConfig
from edge_inspector.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a model artefact to ONNX or a TensorRT engine, checking parity first",
        description="Export one inference graph (normalisation -> backbone -> memory matching -> fusion -> "
        "decoder -> anomaly map and image score) with the memory banks as inputs, check it with the ONNX "
        "checker, then run it beside PyTorch on a set of images: the export fails, with the figures, unless "
        "maps and scores agree within tolerance and every verdict is the same. --format tensorrt builds an "
        "engine from that graph (cached under the artefact's folder by model, GPU and versions) and checks "
        "it the same way against PyTorch on CUDA.")
    p.add_argument("--artefact", type=Path, required=True, help="trained model artefact (.safetensors)")
    p.add_argument("--format", choices=["onnx", "tensorrt"], default="onnx", help="what to export (default onnx)")
    p.add_argument("--out", type=Path, help="ONNX output path (default: the artefact's name with .onnx)")
    p.add_argument("--images", type=Path, help="folder of images to check parity on (default: synthetic parts)")
    p.add_argument("--dataset", choices=get_args(DatasetConfig.model_fields["layout"].annotation),
                   help="check parity on the test part of this dataset's protocol split instead (with --root)")
    p.add_argument("--root", type=Path, help="dataset folder for --dataset")
    p.add_argument("--category", help="dataset category for --dataset (MVTec AD, VisA)")
    p.add_argument("--precision", choices=["fp32", "fp16"], help="precision of the graph (and so of a TensorRT "
                   "engine, strongly typed): fp16 runs the decoder in fp16, the backbone, bank search, distances "
                   "and score in fp32 (default fp32)")
    p.add_argument("--int8", action="store_true", help="refused: INT8 needs explicit quantization in the graph")
    p.add_argument("--max-batch", type=int, default=8, help="tensorrt: largest batch of the engine (default 8)")
    p.add_argument("--rebuild", action="store_true", help="tensorrt: build even when the cache holds the engine")
    p.set_defaults(func=run)


def _images(args: argparse.Namespace, size: int):
    from edge_inspector.runtime.parity import parity_images

    folder = args.images
    if args.dataset:
        import numpy as np

        from edge_inspector.data import load_split
        from edge_inspector.data.loader import iter_batches

        if args.root is None:
            raise UserError(f"export --dataset {args.dataset} needs --root (the dataset folder)")
        test = load_split(args.dataset, args.root, args.category).test
        return np.concatenate([b.images for b in iter_batches(test, size, 16)])
    if not folder:
        return parity_images(size)
    from edge_inspector.data.folder import list_images, require_dir
    from edge_inspector.data.imageio import read_image, to_tensor_layout

    read = [read_image(p, size) for p in list_images(require_dir(folder, "parity image folder"))]
    read = [im for im in read if im is not None]
    if not read:
        raise UserError(f"{folder}: no readable images to check parity on")
    return to_tensor_layout(read)


def run(args: argparse.Namespace) -> int:
    from edge_inspector.model.kmdgan.artefact import load_artefact
    from edge_inspector.runtime import require
    from edge_inspector.runtime.export import export_checked, export_onnx
    from edge_inspector.runtime.parity import check_parity

    if args.int8:
        raise UserError("--int8: refused. TensorRT 11 builds INT8 only from explicit Q/DQ nodes in the graph, which "
                        "this export does not write (and no accuracy figure has earned it); use --precision fp16")
    require("onnxruntime" if args.format == "onnx" else "tensorrt")
    precision = args.precision or "fp32"
    model = load_artefact(args.artefact)
    images = _images(args, model.input_size)
    out = args.out or args.artefact.with_suffix(".onnx" if precision == "fp32" else f".{precision}.onnx")
    if args.format == "onnx":
        figures = export_checked(model, out, images, precision)
        what = f"ONNX graph ({precision}): {out}"
    else:
        from edge_inspector.runtime.export import bank_input_names, bank_locations
        from edge_inspector.runtime.tensorrt_backend import TensorRTBackend
        from edge_inspector.runtime.tensorrt_engine import build_engine
        from edge_inspector.runtime.torch_backend import TorchBackend

        export_onnx(model, out, precision=precision)
        banks = [b.numpy() for b in model.banks]
        engine = build_engine(out, dict(zip(bank_input_names(model), banks)), model.input_size,
                              bank_locations(model), max_batch=args.max_batch, rebuild=args.rebuild)
        # FP32 CUDA reference: the engine's own precision is what is being checked
        figures = check_parity(TorchBackend(model, "cuda", fp16=False), TensorRTBackend(engine, banks), images,
                               model.threshold, precision, model.pixel_threshold)
        what = f"TensorRT engine: {engine}"
    print(what)
    print(f"parity with PyTorch on {figures['images']} images: max map difference {figures['max_map_difference']:.2e}, "
          f"max score difference {figures['max_score_difference']:.2e}, verdicts differing {figures['verdicts_differing']}, "
          f"map pixels on the other side of the pixel threshold {figures['pixel_level']}: "
          f"{figures['pixels_crossing_level']} of {figures['pixels']}")
    return 0
