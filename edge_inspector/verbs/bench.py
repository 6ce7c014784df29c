"""`edge-inspector bench`: every runtime backend side by side in one run, as a table and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_inspector.config import KMDGAN_BANK_SIZE
from edge_inspector.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="measure latency and throughput of each runtime backend side by side",
        description="Latency p50/p99 at batch 1, throughput at each batch (the best is reported) and peak "
        "memory of each backend, each in its own process; the processes take turns call by call, so that a "
        "slow spell of a shared machine falls on every backend alike. Without --artefact an untrained KMDGAN of "
        "the default architecture (as train builds it) with a full-size random bank is timed (inference cost does "
        "not depend on learned weights).")
    p.add_argument("--backend", default="all", help="torch, onnxruntime, tensorrt or all (default)")
    p.add_argument("--artefact", type=Path, help="trained model artefact (default: an untrained timing model)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--size", type=int, default=256, help="input size of the timing model (default 256)")
    p.add_argument("--bank-size", type=int, default=KMDGAN_BANK_SIZE,
                   help=f"bank rows of the timing model (default {KMDGAN_BANK_SIZE}, as trained)")
    p.add_argument("--runs", type=int, default=50, help="timed batch-1 runs per backend (default 50)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8], help="batch sizes for throughput")
    p.add_argument("--stages", action="store_true", help="also time backbone / matching / decoder (eager torch)")
    p.add_argument("--workdir", type=Path, default=Path("reports/bench"), help="where timing graphs go")
    p.add_argument("--json", type=Path, default=Path("reports/bench.json"), help="JSON output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_inspector import __version__
    from edge_inspector.runtime.bench import (
        ALL,
        run_bench,
        stage_flops,
        stage_times,
        table,
        timing_architecture,
        timing_model,
    )

    names = ALL if args.backend == "all" else [args.backend]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise UserError(f"--backend {unknown[0]}: unknown backend; expected one of {', '.join(ALL)} or all")
    if args.artefact and not args.artefact.is_file():
        raise UserError(f"model artefact not found: {args.artefact}")
    results = run_bench(names, args.artefact, args.device, args.size, args.bank_size, args.runs, args.batches,
                        args.workdir)
    if args.artefact:
        from edge_inspector.model.kmdgan.artefact import load_artefact

        try:
            architecture = load_artefact(args.artefact).meta["architecture"]
        except UserError as exc:  # each backend's process reports it in the table too
            architecture = {"error": str(exc)}
        print(f"timed: {args.artefact}")
    else:
        architecture = timing_architecture(args.size).as_dict()
        print(f"timed: an untrained KMDGAN of the default architecture (every module, map blend "
              f"{architecture['map_blend']}, positional profile {bool(architecture['position_sides'])}), "
              f"{args.size} px, {args.bank_size} bank rows per matched stride")
    print(table(results))
    out = {"version": __version__, "device": args.device, "artefact": str(args.artefact) if args.artefact else None,
           "size": args.size, "bank_size": args.bank_size, "architecture": architecture, "results": results}
    if args.stages:
        model = load_artefact(args.artefact) if args.artefact else timing_model(args.size, args.bank_size)
        out["stages_ms"], out["stages_gflop"] = stage_times(model), stage_flops(model)
        print("eager torch, batch 1, median ms: " + ", ".join(f"{k} {v}" for k, v in out["stages_ms"].items()))
        print("GFLOP per image: " + ", ".join(f"{k} {v}" for k, v in out["stages_gflop"].items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"JSON: {args.json}")
    return 0
