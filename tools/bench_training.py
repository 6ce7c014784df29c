#!/usr/bin/env python3
"""KMDGAN training iterations in two memory layouts side by side: NCHW (contiguous) and NHWC
(channels_last, what `train` uses). Each layout gets its own generator (same seed), optimiser and
batch maker (same random stream) on one prepared split; their iterations are timed in blocks taken
in turn, so that a slow spell of this shared machine falls on both. Per iteration: making the batch
(synthetic anomalies, their features and memory search) and the optimisation step. The mean
segmentation loss of the last block says whether the two still train alike (the layouts round
differently, so they are near, not equal). Prints a table and writes JSON.

    python tools/bench_training.py                                   # the demo's synthetic product
    python tools/bench_training.py --dataset magnetic-tile --root ../shared/data/magnetic-tile
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.config import KMDGANModelConfig  # noqa: E402
from edge_inspector.data import load_split  # noqa: E402
from edge_inspector.data.synthetic_product import write_product_set  # noqa: E402
from edge_inspector.model.kmdgan.network import generator_for  # noqa: E402
from edge_inspector.model.kmdgan.pool import prepare  # noqa: E402
from edge_inspector.model.kmdgan.training import PROFILES, training_parts  # noqa: E402

LAYOUTS = {"NCHW": torch.contiguous_format, "NHWC": torch.channels_last}


def trainer(prepared, cfg: KMDGANModelConfig, layout: torch.memory_format, iterations: int):
    """A fresh generator, optimiser and batch maker, as train_kmdgan builds them, in one layout."""
    torch.manual_seed(0)
    model = generator_for(cfg)
    optimisation, maker = training_parts(model, prepared, prepared.banks, cfg, iterations,
                                         PROFILES["fast"]["batch_size"], np.random.default_rng(0), "cpu", layout)
    model.train()
    return maker, optimisation


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=None, help="a dataset layout; none: the demo's synthetic product")
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("--blocks", type=int, default=4, help="blocks per layout, taken in turn")
    p.add_argument("--per-block", type=int, default=10, help="iterations per block")
    p.add_argument("--out", type=Path, default=Path("reports/bench_training.json"))
    args = p.parse_args()
    cfg = KMDGANModelConfig(kind="kmdgan")
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        if args.dataset:
            split = load_split(args.dataset, args.root)
        else:
            split = load_split("folder", write_product_set(Path(tmp) / "product"))
        prepared = prepare(split, cfg, 0, progress=False)
    iterations = args.blocks * args.per_block + 2
    trainers = {name: trainer(prepared, cfg, fmt, iterations) for name, fmt in LAYOUTS.items()}
    for maker, optimisation in trainers.values():  # warm-up: oneDNN picks its kernels
        optimisation.step(*maker())
    times = {name: {"batch": [], "step": [], "seg": []} for name in LAYOUTS}
    for _ in range(args.blocks):
        for name, (maker, optimisation) in trainers.items():
            block = times[name]
            for _ in range(args.per_block):
                start = time.perf_counter()
                batch = maker()
                made = time.perf_counter()
                seg, _loss = optimisation.step(*batch)
                block["batch"].append(made - start)
                block["step"].append(time.perf_counter() - made)
                block["seg"].append(seg)
    rows = []
    for name, t in times.items():
        batch_ms, step_ms = 1000 * float(np.median(t["batch"])), 1000 * float(np.median(t["step"]))
        rows.append({"layout": name, "batch_ms": round(batch_ms, 1), "step_ms": round(step_ms, 1),
                     "iteration_ms": round(batch_ms + step_ms, 1),
                     "last_block_seg_loss": round(float(np.mean(t["seg"][-args.per_block:])), 4)})
    base = rows[0]["iteration_ms"]
    print(f"dataset: {args.dataset or 'synthetic product'}, {len(prepared.normals.images)} normals, "
          f"{args.blocks} x {args.per_block} iterations per layout, {torch.get_num_threads()} threads")
    print("| layout | batch ms | step ms | iteration ms | speed vs NCHW | segmentation loss, last block |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["speedup"] = round(base / r["iteration_ms"], 2)
        print(f"| {r['layout']} | {r['batch_ms']} | {r['step_ms']} | {r['iteration_ms']} | {r['speedup']}x "
              f"| {r['last_block_seg_loss']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset": args.dataset or "synthetic product", "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
