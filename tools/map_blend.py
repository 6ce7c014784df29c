#!/usr/bin/env python3
"""The anomaly map's blend, side by side on one trained KMDGAN artefact (the blend is inference
only): for each of geometric, max and none (the mask alone), the pixel threshold is chosen on
training data as `train` chooses it (held-out training normals, the few-shot anomalies, synthetic
anomalies on the held-out normals) and that validation objective is printed beside the test
part's protocol metrics and mask quality at the chosen threshold, for the cut with hysteresis
(a pixel threshold and an extent level, chosen together) and, with `--cuts plain`, the plain cut.
The choice between blends is made on the validation column; the test columns report. Prints a
table and writes JSON.

    python tools/map_blend.py --artefact models/eval-magnetic-tile-kmdgan.safetensors
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from edge_inspector.data import load_split
from edge_inspector.evaluation.harness import evaluate
from edge_inspector.inspection.frame import numpy_predict
from edge_inspector.model.kmdgan.artefact import load_artefact
from edge_inspector.model.kmdgan.pixel_threshold import choose_pixel_threshold
from edge_inspector.model.scoring import split_holdout

BLENDS = ("geometric", "max", "none")
COLUMNS = ("pixel_auroc", "pixel_ap", "aupro")
MASK_COLUMNS = ("mask_iou", "mask_dice", "area_ratio_median", "area_within_0.5_2", "spurious_share")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artefact", type=Path, required=True)
    p.add_argument("--dataset", default="magnetic-tile")
    p.add_argument("--root", type=Path, default=Path("../shared/data/magnetic-tile"))
    p.add_argument("--category")
    p.add_argument("--blends", nargs="+", default=list(BLENDS), choices=BLENDS)
    p.add_argument("--defects", nargs="+", default=["trained"], choices=["trained", "pasted", "synthetic"],
                   help="how the few-shot defects enter the pixel threshold's validation (pixel_threshold.py)")
    p.add_argument("--cuts", nargs="+", default=["hysteresis"], choices=["hysteresis", "plain"],
                   help="the mask cut: with an extent level (model/mask_cut.cut_mask) or at one level")
    p.add_argument("--out", type=Path, default=Path("reports/map_blend.json"))
    args = p.parse_args()
    model = load_artefact(args.artefact)
    split = load_split(args.dataset, args.root, args.category)
    _, holdout = split_holdout(split.train_normal)
    g, size = model.model, model.input_size
    predict = numpy_predict(model)  # g's blend, set below, is what it runs
    results = {}
    for blend, defects, cut in itertools.product(args.blends, args.defects, args.cuts):
        g.arch.map_blend = blend
        level, extent, validation = choose_pixel_threshold(g, model.banks, holdout, split.few_shot, size,
                                                           defects=defects, hysteresis=cut == "hysteresis")
        result = evaluate(predict, split, size, model.threshold, progress=False, pixel_threshold=level,
                          extent=extent)
        result["validation_objective"] = validation.get(str(level), {})
        name = ", ".join([blend] + ([f"few-shot {defects}"] if len(args.defects) > 1 else [])
                         + ([f"{cut} cut"] if len(args.cuts) > 1 else []))
        results[name] = result
        print(f"{name}: pixel threshold {level}, extent {extent}, validation {result['validation_objective']}",
              file=sys.stderr)
    header = ["blend", "pixel threshold / extent (chosen on training data)", "validation objective", *COLUMNS,
              *MASK_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for blend, r in results.items():
        mask, metrics = r["mask_at_operating_point"], r["metrics"]
        cells = [blend, f"{mask['pixel_threshold']} / {mask['extent'] or '-'}",
                 str(r["validation_objective"].get("objective"))]
        cells += [f"{metrics[c]:.4f}" for c in COLUMNS] + ["-" if mask[c] is None else f"{mask[c]:.4f}"
                                                            for c in MASK_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"artefact": str(args.artefact), "results": results}, indent=2, default=str))
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
