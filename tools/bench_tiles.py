#!/usr/bin/env python3
"""Tiles against resizing on high-resolution frames, with every protocol metric.

Magnetic Tile has no high-resolution frames, so this builds them the way a tray station sees its
parts: a grid x grid tray of test parts, each at the model input size (the scale the model was
trained at), one frame per tray (4 x 4 at 256 px: a 1024 x 1024, 1-megapixel frame). A defective
tray holds one test anomaly (its mask placed in the frame) among test normals; a good tray holds
test normals only. Each frame is inspected by the line service's own code (service.inspect) in
each mode, and the maps are compared with the masks at frame resolution. Only test images are
used, and only for measuring (the model and its threshold come from the artefact).

    python tools/bench_tiles.py --artefact reports/ablation/full.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.config import InspectionConfig  # noqa: E402
from edge_inspector.data import load_split  # noqa: E402
from edge_inspector.data.imageio import read_image, read_mask  # noqa: E402
from edge_inspector.evaluation.harness import METRIC_NAMES, evaluate_frames  # noqa: E402
from edge_inspector.model.kmdgan.artefact import load_artefact  # noqa: E402
from edge_inspector.runtime import open_backend  # noqa: E402


def trays(split, cell: int, grid: int, anomalous: int, normal: int, seed: int):
    """(frame, mask, label) per tray, deterministic under the seed."""
    rng = np.random.default_rng(seed)
    goods = [s for s in split.test if s.label == 0]
    bads = [s for s in split.test if s.label == 1]
    picked = rng.choice(len(bads), size=min(anomalous, len(bads)), replace=False)
    plans = [(bads[i], int(rng.integers(grid * grid))) for i in picked] + [(None, -1)] * normal
    for bad, where in plans:
        cells = [goods[i] for i in rng.choice(len(goods), size=grid * grid, replace=False)]
        if bad is not None:
            cells[where] = bad
        frame = np.zeros((grid * cell, grid * cell, 3), np.uint8)
        mask = np.zeros((grid * cell, grid * cell), bool)
        for k, sample in enumerate(cells):
            y, x = (k // grid) * cell, (k % grid) * cell
            frame[y : y + cell, x : x + cell] = read_image(sample.image, cell)
            mask[y : y + cell, x : x + cell] = read_mask(sample.mask, (cell, cell))
        yield frame, mask, int(bad is not None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artefact", type=Path, required=True, help="trained KMDGAN artefact")
    p.add_argument("--root", type=Path, default=Path("../shared/data/magnetic-tile"))
    p.add_argument("--grid", type=int, default=4, help="parts per tray side (default 4: 1 MP at 256 px)")
    p.add_argument("--anomalous", type=int, default=96, help="defective trays (one defective part each)")
    p.add_argument("--normal", type=int, default=48, help="good trays")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("reports/bench_tiles.json"))
    args = p.parse_args()
    model = load_artefact(args.artefact)
    size = model.input_size
    backend = open_backend(args.backend, model)
    backend.warmup(size)
    split = load_split("magnetic-tile", args.root)
    side = args.grid * size
    modes = {
        "resize": InspectionConfig(mode="resize"),
        f"tiles {size} px, overlap 0 (on the tray grid)": InspectionConfig(mode="tiles", overlap=0.0),
        f"tiles {size} px, overlap 0.25": InspectionConfig(mode="tiles", overlap=0.25),
    }
    results = {}
    for name, inspection in modes.items():
        started = time.perf_counter()
        frames = trays(split, size, args.grid, args.anomalous, args.normal, args.seed)
        result = evaluate_frames(frames, backend.infer, size, model.threshold, inspection, eval_size=side,
                                 total=args.anomalous + args.normal, progress=False)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        results[name] = result
        print(f"{name}: {result['metrics']} {result['ms_per_image']} ms/frame", flush=True)
    print(f"{side} x {side} trays of {args.grid} x {args.grid} Magnetic Tile test parts, {args.anomalous} defective "
          f"+ {args.normal} good, backend {args.backend}, metrics at frame resolution")
    columns = list(METRIC_NAMES)
    print("| mode | " + " | ".join(columns) + " | ms/frame |")
    print("|---|" + "---|" * (len(columns) + 1))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r['metrics'][c]:.4f}" for c in columns) + f" | {r['ms_per_image']:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"artefact": str(args.artefact), "grid": args.grid, "frame_side": side,
                                    "anomalous": args.anomalous, "normal": args.normal, "seed": args.seed,
                                    "backend": args.backend, "results": results}, indent=2, default=str) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
