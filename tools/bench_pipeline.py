#!/usr/bin/env python3
"""Pipeline benchmark: the whole line-service loop (replay camera -> queue -> inference ->
postprocess -> outbox) on this machine, per inspection mode. Prints a table and writes JSON.

With --pages off on watched, each mode also runs with the commissioning page on and nobody watching,
and on with one viewer on the live view and the verdict stream: what the page costs the loop.

Reports frames per second, per-stage median latency, the model's own time per frame and the
pipeline's overhead per frame (everything but the model: resize / tiling, stitching, regions,
verdict JSON, mask PNG, the outbox's synchronous SQLite write). Image-file decoding happens in
the capture thread (a real camera hands over a raw buffer instead) and is reported apart.

    python tools/bench_pipeline.py --frames 60 --megapixels 1 [--pages off on watched --rounds 2]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.config import StationConfig  # noqa: E402
from edge_inspector.data.synthetic_product import DEFECT_TYPES, draw_defect, make_part  # noqa: E402
from edge_inspector.model.kmdgan.artefact import load_artefact, save_artefact  # noqa: E402
from edge_inspector.runtime.bench import timing_model  # noqa: E402
from edge_inspector.service import pipeline as app  # noqa: E402


def frames(folder: Path, count: int, side: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        part = make_part(rng, side)
        if i % 3 == 0:
            part, _ = draw_defect(part, DEFECT_TYPES[i % len(DEFECT_TYPES)], rng)
        cv2.imwrite(str(folder / f"f{i:04d}.png"), part)
    return folder


class Timed:
    """Wraps a backend: accumulates the model's own time for the frame in progress."""

    def __init__(self, backend):
        self.backend, self.name, self.ms = backend, backend.name, 0.0

    def infer(self, images):
        t = time.perf_counter()
        out = self.backend.infer(images)
        self.ms += (time.perf_counter() - t) * 1000
        return out

    def warmup(self, size):
        self.backend.warmup(size)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watch(url: str, stop: threading.Event) -> None:
    """A viewer: reads the stream at url until stop (connecting as soon as the page listens)."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                while not stop.is_set() and r.read(65536):
                    pass
        except OSError:
            time.sleep(0.05)


def run_mode(mode: str, artefact: Path, folder: Path, backend: str, state: Path, count: int,
             page: str = "off") -> dict:
    service_cfg = {"state_dir": str(state / f"{mode}-{page}-{time.monotonic_ns()}"), "queue_size": count + 1,
                   "archive_max_items": 0}
    port = free_port()
    if page != "off":
        service_cfg["http"] = {"port": port, "live_fps": 5}
    cfg = StationConfig.model_validate({
        "station": "bench", "model": {"kind": "kmdgan", "artefact": str(artefact)},
        "runtime": {"backend": backend}, "camera": {"type": "folder", "path": str(folder), "fps": 1000},
        "inspection": {"mode": mode}, "service": service_cfg})
    stop = threading.Event()
    if page == "watched":
        for path in ("/live.mjpg", "/events"):
            threading.Thread(target=watch, args=(f"http://127.0.0.1:{port}{path}", stop), daemon=True).start()
    timed: list[Timed] = []
    original = app.load_model

    def load(cfg, cache):
        model, b = original(cfg, cache)
        timed.append(Timed(b))
        return model, timed[-1]

    rows = []  # (latencies of the verdict, model ms, ms of the whole process() call)

    def echo(message):
        rows.append([message["latency_ms"], timed[-1].ms])
        timed[-1].ms = 0.0

    app.load_model = load
    try:
        service = app.LineService(cfg, echo=echo, exit_when_done=True)
        process = service.process

        def timed_process(*item):
            t = time.perf_counter()
            out = process(*item)
            rows[-1].append((time.perf_counter() - t) * 1000)
            return out

        service.process = timed_process
        started = time.perf_counter()
        service.run(install_signals=False)
        wall = time.perf_counter() - started
    finally:
        app.load_model = original
        stop.set()
    # the first frames wait for the model to load: the steady state is what a line sees
    steady = rows[len(rows) // 5:]
    stage = lambda k: statistics.median(r[0][k] for r in steady)  # noqa: E731
    model_ms = statistics.median(r[1] for r in steady)
    work = [r[2] for r in steady]
    per_frame = statistics.median(work)
    return {"mode": mode, "page": page, "frames": len(rows), "wall_s": round(wall, 1),
            "frames_per_s": round(1000 / per_frame, 2),
            "stage_ms": {k: round(stage(k), 2) for k in ("preprocess_and_inference", "postprocess")},
            "process_ms": round(per_frame, 2),
            "model_ms": round(model_ms, 2),
            "overhead_ms": round(statistics.median(w - r[1] for w, r in zip(work, steady)), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--megapixels", type=float, default=1.0, help="square frames of about this size")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--artefact", type=Path, help="trained model (default: an untrained full-size timing model)")
    p.add_argument("--modes", nargs="+", default=["resize", "tiles"])
    p.add_argument("--pages", nargs="+", default=["off"], choices=["off", "on", "watched"],
                   help="commissioning page off, on with nobody watching, on with a viewer")
    p.add_argument("--rounds", type=int, default=1, help="run every variant this many times, interleaved")
    p.add_argument("--out", type=Path, default=Path("reports/bench_pipeline.json"))
    args = p.parse_args()
    side = int(round((args.megapixels * 1e6) ** 0.5))
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp = Path(tmp)
        artefact = args.artefact
        if artefact is None:
            m = timing_model()
            artefact = save_artefact(tmp / "timing.safetensors", m.model, m.banks, 0.0, 256, {"timing": True})
        load_artefact(artefact)
        folder = frames(tmp / "frames", args.frames, side)
        t = time.perf_counter()
        for f in sorted(folder.iterdir()):
            cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        decode_ms = (time.perf_counter() - t) * 1000 / args.frames
        results = [run_mode(mode, artefact, folder, args.backend, tmp / "state", args.frames, page)
                   for _ in range(args.rounds) for mode in args.modes for page in args.pages]
    print(f"{side} x {side} frames ({side * side / 1e6:.2f} MP), backend {args.backend}, "
          f"PNG decode in the capture thread {decode_ms:.1f} ms/frame")
    print("| mode | page | frames/s | per frame ms | model ms | overhead ms | preprocess+inference ms | "
          "postprocess ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["stage_ms"]
        print(f"| {r['mode']} | {r['page']} | {r['frames_per_s']:.2f} | {r['process_ms']:.1f} | {r['model_ms']:.1f} | "
              f"{r['overhead_ms']:.2f} | {s['preprocess_and_inference']:.1f} | {s['postprocess']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"side": side, "backend": args.backend, "decode_ms": round(decode_ms, 2),
                                    "results": results}, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
