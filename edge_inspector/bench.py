"""Runtime benchmark: every backend side by side in one run, each in its own process.

Per backend: latency p50/p99 at batch 1, throughput at each batch (the best reported), peak
resident memory of a process that ran only that backend (and peak device memory on CUDA for
torch). A process per backend keeps one backend's memory out of another's figure.
Without an artefact, an untrained full KMDGAN with a full-size random bank is timed: the cost
of inference does not depend on what the weights learned, so latency figures hold for any model.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np

from edge_inspector.runtime import BACKENDS, available


def timing_model(input_size: int = 256, bank_size: int = 20000, seed: int = 0):
    """An untrained full KMDGAN with random banks of bank_size rows (for timing only)."""
    import torch

    from edge_inspector.artefact import LoadedModel
    from edge_inspector.model.backbone import EfficientNetLite0Features
    from edge_inspector.model.kmdgan import STRIDES, KMDGANArchitecture, KMDGANGenerator

    torch.manual_seed(seed)
    backbone = EfficientNetLite0Features(STRIDES)
    model = KMDGANGenerator(KMDGANArchitecture(), backbone).eval()
    dims = dict(zip(STRIDES, backbone.channels))
    banks = [torch.rand(bank_size, dims[s]) for s in model.matched]
    meta = {"input_size": input_size, "threshold": 0.0, "sha256": f"timing-{input_size}-{bank_size}-{seed}"}
    return LoadedModel(model, banks, meta, None)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(backend, size: int, runs: int, batches: list[int]) -> dict:
    """Latency at batch 1 and throughput per batch of one ready backend."""
    rng = np.random.default_rng(0)
    backend.warmup(size, runs=3)
    one = rng.random((1, 3, size, size), dtype=np.float32)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        backend.infer(one)
        times.append((time.perf_counter() - t) * 1000)
    throughput = {}
    for b in batches:
        images = rng.random((b, 3, size, size), dtype=np.float32)
        backend.infer(images)  # first call at a new batch size may plan or allocate
        repeats = max(2, runs // (2 * b))
        t = time.perf_counter()
        for _ in range(repeats):
            backend.infer(images)
        throughput[b] = round(b * repeats / (time.perf_counter() - t), 2)
    best = max(throughput, key=throughput.get)
    return {"p50_ms": round(_percentile(times, 50), 2), "p99_ms": round(_percentile(times, 99), 2),
            "mean_ms": round(float(np.mean(times)), 2), "runs": runs, "throughput": throughput,
            "best_batch": best, "best_images_per_s": throughput[best]}


def _child(name: str, artefact: str | None, device: str, size: int, bank_size: int, runs: int,
           batches: list[int], workdir: str, queue) -> None:
    try:
        import torch

        from edge_inspector.artefact import load_artefact
        from edge_inspector.runtime import open_backend

        model = load_artefact(Path(artefact)) if artefact else timing_model(size, bank_size)
        onnx_path = None if artefact else Path(workdir) / f"timing-{size}-{bank_size}.onnx"
        backend = open_backend(name, model, device, onnx_path=onnx_path)
        result = measure(backend, model.input_size, runs, batches)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if name == "torch" and device.startswith("cuda"):
            result["peak_device_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        queue.put(result)
    except Exception as exc:  # reported in the table, not a crash of the whole run
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def run_bench(names: list[str], artefact: Path | None, device: str, size: int, bank_size: int, runs: int,
              batches: list[int], workdir: Path) -> dict[str, dict]:
    reasons = available()
    results = {}
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    for name in names:
        if reasons.get(name):
            results[name] = {"unavailable": reasons[name]}
            continue
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, str(artefact) if artefact else None, device, size,
                                                bank_size, runs, batches, str(workdir), queue))
        proc.start()
        results[name] = queue.get()
        proc.join()
    return results


def stage_flops(model) -> dict[str, float]:
    """GFLOP per stage at batch 1 (matmuls and convolutions, as torch's flop counter sees them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    g, size = model.model.eval(), model.input_size
    image = torch.rand(1, 3, size, size)
    out = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as c:
            feats = g.features(image)
        out["backbone"] = c.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as c:
            memories = g.match(feats, model.banks)
        out["matching"] = c.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as c:
            logits, distances = g.decode(image, feats, memories)
            prob = torch.sigmoid(logits)
            g.anomaly_map(prob, distances)
            g.score(prob, distances)
        out["decoder_and_score"] = c.get_total_flops() / 1e9
    return {k: round(v, 3) for k, v in out.items()}


def stage_times(model, runs: int = 20) -> dict[str, float]:
    """Median ms per stage of eager torch at batch 1: backbone, memory matching, the rest."""
    import torch

    size = model.input_size
    image = torch.rand(1, 3, size, size)
    g = model.model.eval()
    stages = {"backbone": [], "matching": [], "decoder_and_score": []}
    with torch.no_grad():
        for i in range(runs + 3):
            t0 = time.perf_counter()
            feats = g.features(image)
            t1 = time.perf_counter()
            memories = g.match(feats, model.banks)
            t2 = time.perf_counter()
            logits, distances = g.decode(image, feats, memories)
            prob = torch.sigmoid(logits)
            g.anomaly_map(prob, distances)
            g.score(prob, distances)
            t3 = time.perf_counter()
            if i >= 3:
                for k, (a, b) in zip(stages, ((t0, t1), (t1, t2), (t2, t3))):
                    stages[k].append((b - a) * 1000)
    return {k: round(_percentile(v, 50), 2) for k, v in stages.items()}


def table(results: dict[str, dict], base: str = "torch") -> str:
    header = ["backend", "p50 ms (batch 1)", "p99 ms", "best batch", "images/s", "speed-up p50 vs " + base,
              "peak RSS MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ref = results.get(base, {}).get("p50_ms")
    for name, r in results.items():
        if "p50_ms" not in r:
            lines.append(f"| {name} | " + (r.get("unavailable") or r.get("error", "")) + " |" + " |" * 5)
            continue
        speed = f"{ref / r['p50_ms']:.2f}x" if ref else "-"
        lines.append(f"| {name} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['best_batch']} | "
                     f"{r['best_images_per_s']:.1f} | {speed} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


ALL = list(BACKENDS)
