#!/usr/bin/env python3
"""Native resolution end to end, on the project's large-frame synthetic set (frames of 1280 x 960
with defects of 7 to 46 px and exact masks): a model trained on whole frames resized to its input
against one trained on tiles, each measured the way a station would run it. Prints a table and
writes JSON.

    python tools/bench_native.py [--normals 40 --per-defect 8 --iterations 200]

Rows: trained resized / inspected resized (the protocol's path); trained resized / inspected in
tiles (what a tiled station ran before training honoured inspection.mode); trained on tiles /
inspected in tiles. Same seed, split and settings (the demo's training budget); every default this
compares was chosen elsewhere, and this set is synthetic, so it chose nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.config import InspectionConfig, KMDGANModelConfig  # noqa: E402
from edge_inspector.data import load_split  # noqa: E402
from edge_inspector.data.synthetic_product import write_large_frame_set  # noqa: E402
from edge_inspector.evaluation.harness import evaluate_frames, frames_of  # noqa: E402
from edge_inspector.inspection.frame import numpy_predict  # noqa: E402
from edge_inspector.inspection.tiled_training import train_station_model  # noqa: E402
from edge_inspector.model.kmdgan.artefact import load_artefact  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--normals", type=int, default=40)
    p.add_argument("--per-defect", type=int, default=8)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=960)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--eval-size", type=int, default=960, help="grid the maps and masks are compared on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-kinds", nargs="+", help="model.synthetic_kinds (default: the config's)")
    p.add_argument("--rows", nargs="+", default=["resize/resize", "resize/tiles", "tiles/tiles"],
                   choices=["resize/resize", "resize/tiles", "tiles/tiles"], help="trained/inspected pairs to run")
    p.add_argument("--out", type=Path, default=Path("reports/bench_native.json"))
    args = p.parse_args()
    kinds = {"synthetic_kinds": args.synthetic_kinds} if args.synthetic_kinds else {}
    model_cfg = KMDGANModelConfig(kind="kmdgan", input_size=128, bank_size=4000, iterations=args.iterations,
                                  batch_size=8, **kinds)
    tiles = InspectionConfig(mode="tiles", tile_size=128, overlap=0.25)
    resize = InspectionConfig(mode="resize")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-native-") as tmp:
        tmp = Path(tmp)
        root = write_large_frame_set(tmp / "set", args.normals, args.per_defect, args.width, args.height,
                                     seed=args.seed)
        split = load_split("folder", root)
        modes = {"resize": resize, "tiles": tiles}
        for trained, inspected in ([modes[m] for m in row.split("/")] for row in args.rows):
            out = tmp / f"{trained.mode}.safetensors"
            started = time.perf_counter()
            if not out.is_file():
                train_station_model(split, model_cfg, trained if trained.mode == "tiles" else None, out, 0.01,
                                    seed=args.seed, progress=False)
            model = load_artefact(out)
            train_s = time.perf_counter() - started
            # a tiles-trained artefact records its frame threshold by each rule: every one is measured
            rules = (model.meta.get("inspection") or {}).get("thresholds") or {"held-out images": model.threshold}
            rules = {k: v for k, v in rules.items() if k != "independent_tiles"}
            for rule, threshold in rules.items():
                result = evaluate_frames(frames_of(split.test), numpy_predict(model), 128, threshold, inspected,
                                         args.eval_size, total=len(split.test), pixel_threshold=model.pixel_threshold,
                                         extent=model.pixel_extent, progress=False)
                m, mask = result["metrics"], result["mask_at_operating_point"]
                rows.append({"trained": trained.mode, "inspected": inspected.mode, "rule": rule,
                             "train_s": round(train_s, 1), "threshold": threshold, **m, "mask": mask,
                             "ms_per_frame": result["ms_per_image"]})
            print(f"trained {trained.mode}, inspected {inspected.mode}: done", flush=True)
    print(f"\n{args.width} x {args.height} frames, split {split.sizes()}, {args.iterations} iterations at 128 px, "
          "tiles of 128 px overlapping 0.25")
    print("| trained | inspected | threshold from | threshold | image AUROC | pixel AUROC | pixel AP | AUPRO | "
          "escapes | false rejects | mask IoU | area within 0.5-2 | ms / frame |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mk = r["mask"] or {}
        print(f"| {r['trained']} | {r['inspected']} | {r['rule']} | {r['threshold']:.3f} | {r['image_auroc']:.4f} | "
              f"{r['pixel_auroc']:.4f} | {r['pixel_ap']:.4f} | {r['aupro']:.4f} | {r['escape_rate']:.2%} | "
              f"{r['false_reject_rate']:.2%} | {mk.get('mask_iou') or 0:.3f} | "
              f"{mk.get('area_within_0.5_2') or 0:.0%} | "
              f"{r['ms_per_frame']:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"split": split.sizes(), "args": vars(args) | {"out": str(args.out)},
                                    "rows": rows}, indent=2, default=str) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
