#!/usr/bin/env python3
"""The demo's masks at the pixel threshold each validation rule chooses (model/kmdgan/pixel_threshold.py:
the few-shot defects as trained, pasted onto held-out normals, or left out), on a `make demo` output folder:
the rule is chosen on the demo's calibration (its held-out normals and labelled defects), then the
masks of the line run's defective parts are cut at it, as the service cuts them, and compared with
the defects the demo drew. The demo's synthetic product is a validation set here: it chooses.
A demo that inspects in tiles (the default now) chose its levels on tiles: only its own cut is
reported then, beside nothing re-chosen on whole frames.
Prints a table and writes JSON.

    python tools/demo_masks.py --demo demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.calibration.run import samples  # noqa: E402
from edge_inspector.config import load_config  # noqa: E402
from edge_inspector.data.imageio import read_image  # noqa: E402
from edge_inspector.evaluation.metrics import mask_metrics  # noqa: E402
from edge_inspector.inspection.frame import inspect_frame, numpy_predict  # noqa: E402
from edge_inspector.model.kmdgan.artefact import load_artefact  # noqa: E402
from edge_inspector.model.kmdgan.pixel_threshold import choose_pixel_threshold  # noqa: E402
from edge_inspector.model.scoring import split_holdout  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", type=Path, default=Path("demo"), help="the output folder of `edge-inspector demo`")
    p.add_argument("--defects", nargs="+", default=["trained", "pasted"], choices=["trained", "pasted", "synthetic"],
                   help="how the few-shot defects enter the pixel threshold's validation")
    p.add_argument("--cuts", nargs="+", default=["hysteresis", "plain"], choices=["hysteresis", "plain"],
                   help="the mask cut: with an extent level chosen beside the pixel threshold, or at one level")
    p.add_argument("--out", type=Path, default=Path("reports/demo_masks.json"))
    args = p.parse_args()
    station = args.demo / "calibration" / "demo"
    model = load_artefact(station / "current" / "model.safetensors")
    split = samples(station)
    _, holdout = split_holdout(split.train_normal)
    # inspected as the demo's station inspects (tiles since the demo runs at native resolution)
    predict, inspection = numpy_predict(model), load_config(args.demo / "station.yaml").inspection
    maps, truths = [], []
    for truth in sorted((args.demo / "line-truth").glob("*.png")):
        result = inspect_frame(read_image(args.demo / "camera-line" / truth.name), predict, model.input_size,
                               inspection)
        maps.append(result.frame_map())
        truths.append(cv2.imread(str(truth), cv2.IMREAD_GRAYSCALE) > 127)
    rows = {"the calibration's own": mask_metrics([1] * len(maps), truths, maps, model.pixel_threshold,
                                                  extent=model.pixel_extent)}
    rechoose = inspection.mode != "tiles"  # a tiles calibration chose on tiles; whole held-out frames would mislead
    if not rechoose:
        print("tiles: the calibration's own cut only (re-choosing it here would validate on whole frames)")
    for defects in args.defects if rechoose else ():
        for cut in args.cuts:
            level, extent, _ = choose_pixel_threshold(model.model, model.banks, holdout, split.few_shot,
                                                      model.input_size, defects=defects, hysteresis=cut == "hysteresis")
            rows[f"{defects}, {cut}"] = mask_metrics([1] * len(maps), truths, maps, level, extent=extent)
    print(f"{len(maps)} defective line parts of {args.demo}")
    print("| few-shot defects in validation, cut | pixel threshold / extent | mask IoU | median area ratio | "
          "area within 0.5-2 |")
    print("|---|---|---|---|---|")
    for name, m in rows.items():
        print(f"| {name} | {m['pixel_threshold']} / {m['extent'] or '-'} | {m['mask_iou']:.3f} | "
              f"{m['area_ratio_median']:.2f} | {m['area_within_0.5_2']:.0%} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
