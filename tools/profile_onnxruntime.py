#!/usr/bin/env python3
"""Where ONNX Runtime spends its time on the full KMDGAN graph: per-operator kernel time from
ONNX Runtime's own profiler, at batch 1. Prints a table and writes JSON.

    python tools/profile_onnxruntime.py --bank-size 8192
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.model.memory_bank.search import pad_bank  # noqa: E402
from edge_inspector.runtime.bench import timing_model  # noqa: E402
from edge_inspector.runtime.export import bank_input_names, export_onnx  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--bank-size", type=int, default=8192)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--workdir", type=Path, default=Path("reports/profile"))
    p.add_argument("--out", type=Path, default=Path("reports/profile_onnxruntime.json"))
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = timing_model(args.size, args.bank_size)
    graph = export_onnx(model, args.workdir / f"timing-{args.size}-{args.bank_size}.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(args.workdir / "onnxruntime_profile")
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    feeds = {"image": np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32),
             **{n: pad_bank(b.numpy()) for n, b in zip(bank_input_names(model), model.banks)}}
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000)
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    calls = args.runs + 3  # the profile covers the warm-up runs too
    total = sum(per_op.values())
    rows = [{"op": op, "ms_per_run": round(us / calls / 1000, 2), "share": round(us / total, 3)}
            for op, us in per_op.most_common()]
    print(f"ONNX Runtime, batch 1, {args.size} px, bank {args.bank_size}: p50 {np.median(times):.1f} ms")
    print("| operator | ms per run | share |\n|---|---|---|")
    for r in rows[:12]:
        print(f"| {r['op']} | {r['ms_per_run']:.2f} | {r['share']:.1%} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"size": args.size, "bank_size": args.bank_size,
                                    "p50_ms": round(float(np.median(times)), 2), "operators": rows}, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
