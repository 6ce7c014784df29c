#!/usr/bin/env python3
"""Trained artefacts side by side in one process: batch-1 latency of each (eager torch and ONNX
Runtime), the calls interleaved artefact by artefact so that a slow spell of this shared machine
falls on all alike. For comparing backbones (Lite0 against Lite2). Prints a table and writes JSON.

    python tools/bench_backbones.py models/mt-lite0.safetensors models/mt-lite2.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.model.kmdgan.artefact import load_artefact  # noqa: E402
from edge_inspector.runtime import open_backend  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artefacts", nargs="+", type=Path)
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--out", type=Path, default=Path("reports/bench_backbones.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backbones-") as tmp:
        runners = []
        for i, path in enumerate(args.artefacts):
            model = load_artefact(path)
            for name in ("torch", "onnxruntime"):
                backend = open_backend(name, model, onnx_path=Path(tmp) / f"{i}.onnx")
                backend.warmup(model.input_size)
                runners.append((path.name, model.meta.get("backbone"), name, backend, model.input_size))
        images = np.random.default_rng(0).random((1, 3, runners[0][4], runners[0][4]), dtype=np.float32)
        times: list[list[float]] = [[] for _ in runners]
        for _ in range(args.runs):
            for k, (*_, backend, _size) in enumerate(runners):
                start = time.perf_counter()
                backend.infer(images)
                times[k].append((time.perf_counter() - start) * 1000)
    rows = [{"artefact": a, "backbone": b, "backend": n, "p50_ms": round(float(np.median(t)), 1),
             "p90_ms": round(float(np.percentile(t, 90)), 1)} for (a, b, n, *_), t in zip(runners, times)]
    print("| artefact | backbone | backend | p50 ms | p90 ms |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['artefact']} | {r['backbone']} | {r['backend']} | {r['p50_ms']} | {r['p90_ms']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
