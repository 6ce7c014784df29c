#!/usr/bin/env python3
"""The torch CUDA backend on a GPU: FP16 against FP32 parity on a set of images, latency p50/p99 at
batch 1 and throughput at batches 1, 8, 16, 32, each with and without CUDA graphs, the banks
resident on the device and then swapped for another bank. Prints a table and writes JSON.
Run by tools/gpu_check.sh on a lent GPU machine (this development machine has no GPU).

    python tools/gpu_bench.py --artefact models/magnetic-tile.safetensors --images gpu-images/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_inspector.data.folder import list_images  # noqa: E402
from edge_inspector.data.imageio import read_image, to_tensor_layout  # noqa: E402
from edge_inspector.model.kmdgan.artefact import load_artefact  # noqa: E402
from edge_inspector.runtime.bench import timing_model  # noqa: E402
from edge_inspector.runtime.parity import check_parity  # noqa: E402
from edge_inspector.runtime.torch_backend import TorchBackend  # noqa: E402

BATCHES = (1, 8, 16, 32)


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1000)
    return out


def runner(backend: TorchBackend, x: torch.Tensor, graphs: bool):
    """A callable running one batch; with graphs, a captured CUDA graph replayed."""
    model, banks = backend.model, backend.banks

    def eager():
        with torch.no_grad():
            return model(x, *banks)

    if not graphs:
        return eager
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            eager()  # warm-up on a side stream, as capture requires
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        eager()
    return graph.replay


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artefact", type=Path, help="trained artefact (default: the untrained timing model, 256 px)")
    p.add_argument("--images", type=Path, help="folder of images for parity (default: none, parity skipped)")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--out", type=Path, default=Path("gpu.json"))
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    model = load_artefact(args.artefact) if args.artefact else timing_model(256)
    size = model.input_size
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "size": size,
              "artefact": str(args.artefact), "bank_rows": [int(b.shape[0]) for b in model.banks]}
    fp32, fp16 = TorchBackend(model, "cuda", fp16=False), TorchBackend(model, "cuda", fp16=True)
    if args.images:
        images = to_tensor_layout([im for im in (read_image(f, size) for f in list_images(args.images))
                                   if im is not None])
        report["parity_fp16_vs_fp32"] = check_parity(fp32, fp16, images, model.threshold, "fp16",
                                                     model.pixel_threshold)
    rows = []
    for precision, backend in (("fp32", fp32), ("fp16", fp16)):
        for graphs in (False, True):
            for b in BATCHES:
                x = torch.rand(b, 3, size, size, device="cuda", dtype=backend.dtype)
                try:
                    run = runner(backend, x, graphs)
                    times = timed(run, args.runs if b == 1 else max(20, args.runs // 4))
                except RuntimeError as exc:  # a capture the model does not allow: said, not hidden
                    rows.append({"precision": precision, "cuda_graphs": graphs, "batch": b, "error": str(exc)[:200]})
                    continue
                p50 = float(np.percentile(times, 50))
                rows.append({"precision": precision, "cuda_graphs": graphs, "batch": b, "p50_ms": round(p50, 3),
                             "p99_ms": round(float(np.percentile(times, 99)), 3),
                             "images_per_s": round(b * 1000 / p50, 1)})
    # a bank swapped in place: another bank of the same size, then the first again, timed at batch 1
    other = [b.flip(0).numpy() for b in model.banks]
    fp16.swap_banks(other)
    swapped = timed(runner(fp16, torch.rand(1, 3, size, size, device="cuda", dtype=torch.float16), False), 50)
    report["fp16_batch1_after_bank_swap_p50_ms"] = round(float(np.percentile(swapped, 50)), 3)
    report["rows"] = rows
    print("| precision | CUDA graphs | batch | p50 ms | p99 ms | images/s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['cuda_graphs']} | {r['batch']} | {r.get('p50_ms', r.get('error'))} | "
              f"{r.get('p99_ms', '')} | {r.get('images_per_s', '')} |")
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
