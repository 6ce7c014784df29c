"""Runtime benchmark: every backend side by side in one run, each in its own process.

Per backend: latency p50/p99 at batch 1, throughput at each batch (the best reported), peak
resident memory of a process that ran only that backend (and peak device memory on CUDA for
torch). A process per backend keeps one backend's memory out of another's figure.
Without an artefact, an untrained KMDGAN with a full-size random bank is timed, built from the
default model config (every module, the map blend and the positional profile on, as `train` and
`calibrate` build it): the cost of inference does not depend on what the weights learned, so its
latency holds for any model trained with the defaults.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from pathlib import Path
from queue import Empty

import numpy as np

from edge_inspector.config import KMDGAN_BANK_SIZE
from edge_inspector.runtime import BACKENDS, available

SETTLE_S = 0.02


def timing_architecture(input_size: int):
    """What the timing model is built as: the default model config's architecture."""
    from edge_inspector.config import KMDGANModelConfig
    from edge_inspector.model.kmdgan.network import KMDGANArchitecture

    return KMDGANArchitecture.from_config(KMDGANModelConfig(kind="kmdgan", input_size=input_size))


def timing_model(input_size: int = 256, bank_size: int = KMDGAN_BANK_SIZE, seed: int = 0):
    """An untrained KMDGAN with the default config's architecture and random banks of bank_size
    rows (for timing only)."""
    import torch

    from edge_inspector.model.backbone import EfficientNetLiteFeatures
    from edge_inspector.model.kmdgan.artefact import LoadedModel
    from edge_inspector.model.kmdgan.network import STRIDES, KMDGANGenerator

    torch.manual_seed(seed)
    backbone = EfficientNetLiteFeatures(STRIDES)
    arch = timing_architecture(input_size)
    model = KMDGANGenerator(arch, backbone).eval()
    dims = dict(zip(STRIDES, backbone.channels))
    banks = [torch.rand(bank_size, dims[s]) for s in model.matched]
    meta = {"input_size": input_size, "threshold": 0.0, "sha256": f"timing-{input_size}-{bank_size}-{seed}",
            "architecture": arch.as_dict()}
    return LoadedModel(model, banks, meta, None)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _direct(fn):
    return fn()


def measure_turns(runs: int, batches: list[int]) -> int:
    """How many turns measure() takes: the warm-up, each timed call, each batch size."""
    return 1 + runs + len(batches)


def measure(backend, size: int, runs: int, batches: list[int], turn=_direct) -> dict:
    """Latency at batch 1 and throughput per batch of one ready backend. turn(fn) runs fn when
    it is this backend's turn (see run_bench); it is called measure_turns(runs, batches) times."""
    rng = np.random.default_rng(0)
    turn(lambda: backend.warmup(size, runs=3))
    one = rng.random((1, 3, size, size), dtype=np.float32)

    def timed_one() -> float:
        # back-to-back, as frames on a line: an untimed call wakes the thread pool and warms the
        # caches with this backend's own weights after the other backend's turn
        backend.infer(one)
        t = time.perf_counter()
        backend.infer(one)
        return (time.perf_counter() - t) * 1000

    times = [turn(timed_one) for _ in range(runs)]

    def rate(b: int) -> float:
        images = rng.random((b, 3, size, size), dtype=np.float32)
        backend.infer(images)  # first call at a new batch size may plan or allocate
        repeats = max(2, runs // (2 * b))
        t = time.perf_counter()
        for _ in range(repeats):
            backend.infer(images)
        return round(b * repeats / (time.perf_counter() - t), 2)

    throughput = {b: turn(lambda b=b: rate(b)) for b in batches}
    best = max(throughput, key=throughput.get)
    return {"p50_ms": round(_percentile(times, 50), 2), "p99_ms": round(_percentile(times, 99), 2),
            "mean_ms": round(float(np.mean(times)), 2), "runs": runs, "throughput": throughput,
            "best_batch": best, "best_images_per_s": throughput[best]}


class _Turns:
    """Round robin between the backends' processes: one runs while the others wait on an event
    (blocked, not spinning), so each timed call has the CPU to itself, and a slow spell of this
    shared machine falls on every backend alike instead of on whichever ran then."""

    def __init__(self, index: int, events):
        self.index, self.events = index, events

    def __call__(self, fn):
        mine = self.events[self.index]
        mine.wait()
        mine.clear()
        try:
            return fn()
        finally:
            # thread pools spin for a while after their work ends (OpenMP, ONNX Runtime): let them
            # go idle first, so that they do not run on into the next backend's timed call
            time.sleep(SETTLE_S)
            self.events[(self.index + 1) % len(self.events)].set()


def _child(name: str, artefact: str | None, device: str, size: int, bank_size: int, runs: int,
           batches: list[int], workdir: str, queue, index: int, events, ready) -> None:
    turn = _Turns(index, events)
    backend, error = None, None
    try:
        import torch

        from edge_inspector.model.kmdgan.artefact import load_artefact
        from edge_inspector.runtime import open_backend

        model = load_artefact(Path(artefact)) if artefact else timing_model(size, bank_size)
        onnx_path = None if artefact else Path(workdir) / f"timing-{size}-{bank_size}.onnx"
        # export and load one at a time: the graph file is shared, and loading is not timed
        backend = turn(lambda: open_backend(name, model, device, onnx_path=onnx_path))
    except Exception as exc:  # reported in the table, not a crash of the whole run
        error = exc
    ready.wait()
    if backend is None:
        # keep passing the turn, so that the others finish
        for _ in range(measure_turns(runs, batches)):
            turn(lambda: None)
        queue.put((index, {"error": f"{type(error).__name__}: {error}"}))
        return
    try:
        result = measure(backend, model.input_size, runs, batches, turn)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if name == "torch" and device.startswith("cuda"):
            result["peak_device_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        queue.put((index, result))
    except Exception as exc:
        queue.put((index, {"error": f"{type(exc).__name__}: {exc}"}))


def run_bench(names: list[str], artefact: Path | None, device: str, size: int, bank_size: int, runs: int,
              batches: list[int], workdir: Path) -> dict[str, dict]:
    """Each available backend in its own process (its own peak memory), all started together and
    taking turns call by call: the latencies are measured side by side, interleaved."""
    reasons = available()
    results = {name: {"unavailable": reasons[name]} for name in names if reasons.get(name)}
    running = [name for name in names if not reasons.get(name)]
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    events = [ctx.Event() for _ in running]
    ready = ctx.Barrier(len(running)) if running else None
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(name, str(artefact) if artefact else None, device, size, bank_size,
                                              runs, batches, str(workdir), queue, i, events, ready))
             for i, name in enumerate(running)]
    for proc in procs:
        proc.start()
    if events:
        events[0].set()
    measured: dict[int, dict] = {}
    while len(measured) < len(procs):
        try:
            index, result = queue.get(timeout=2)
            measured[index] = result
        except Empty:
            dead = [i for i, proc in enumerate(procs) if i not in measured and proc.exitcode not in (None, 0)]
            if dead:  # a crashed backend (say, a native library's abort) would stall the round robin
                for proc in procs:
                    proc.terminate()
                for i in range(len(procs)):
                    measured.setdefault(i, {"error": f"process of {running[dead[0]]} died "
                                                     f"(exit code {procs[dead[0]].exitcode}); run stopped"})
    for proc in procs:
        proc.join()
    results.update({name: measured[i] for i, name in enumerate(running)})
    return {name: results[name] for name in names}


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
            g.map_and_score(torch.sigmoid(logits), distances)
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
            g.map_and_score(torch.sigmoid(logits), distances)
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
