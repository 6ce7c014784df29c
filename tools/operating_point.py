#!/usr/bin/env python3
"""Where a trained model's operating threshold sits: the held-out training normals' highest scores
(the threshold is set on them), and on the test part the false rejects and escapes at that
threshold and at the threshold that rejects 1, 2, ... test normals (what the ranking itself
gives). Then the held-out normals against the test normals, score part by part (quantiles, and the
AUROC of test normal against held-out normal: 0.5 where both are drawn alike). The threshold's
false-reject estimate holds only where they are; a part whose AUROC is far from 0.5 says where it
does not. Reports only; it chooses nothing. Prints tables and writes JSON.

    python tools/operating_point.py --artefact reports/ablation-kinds/full.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_inspector.data import load_split
from edge_inspector.data.loader import iter_batches
from edge_inspector.inspection.frame import numpy_predict
from edge_inspector.model.kmdgan.artefact import load_artefact
from edge_inspector.model.kmdgan.score_calibration import outputs, score_parts
from edge_inspector.model.scoring import roc_auc, split_holdout

QUANTILES = (50, 75, 90, 95, 100)


def scores_of(predict, samples, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image scores in float64, as the service compares them; labels)."""
    scores, labels = [], []
    for batch in iter_batches(samples, size, 8):
        scores += list(predict(batch.images)[1])
        labels += [s.label for s in batch.samples]
    return np.asarray(scores, dtype=np.float64), np.asarray(labels)


def standardised_parts(model, samples) -> np.ndarray:
    """(N, parts): each image-score part as the score adds it up (centred and scaled)."""
    prob, dists = outputs(model.model, model.banks, samples, model.input_size)
    parts = score_parts(model.model, prob, dists)
    n = parts.shape[1]
    return ((parts - model.model.score_center[:n]) / model.model.score_scale[:n]).numpy()


def held_out_against_test(model, held_samples, test_normal_samples) -> list[dict]:
    """Per score part (and the score), the two sets' quantiles and AUROC(test normal > held-out)."""
    held, test = standardised_parts(model, held_samples), standardised_parts(model, test_normal_samples)
    names = ["mask"] + [f"memory distance (stride {model.model.arch.distance_stride}, "
                        f"{model.model.arch.distance_score})"] * (held.shape[1] - 1)
    columns = [(name, held[:, i], test[:, i]) for i, name in enumerate(names)]
    columns.append(("score (their sum)", held.sum(1), test.sum(1)))
    labels = np.r_[np.zeros(len(held)), np.ones(len(test))]
    return [{"part": name, "held_out": [round(float(v), 3) for v in np.percentile(h, QUANTILES)],
             "test_normals": [round(float(v), 3) for v in np.percentile(t, QUANTILES)],
             "auroc_test_over_held_out": round(float(roc_auc(labels, np.r_[h, t])), 4)} for name, h, t in columns]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artefact", type=Path, required=True)
    p.add_argument("--dataset", default="magnetic-tile")
    p.add_argument("--root", type=Path, default=Path("../shared/data/magnetic-tile"))
    p.add_argument("--category")
    p.add_argument("--rejected", type=int, nargs="+", default=[1, 2, 3, 4, 7],
                   help="numbers of test normals rejected to report the escapes at")
    p.add_argument("--out", type=Path, default=Path("reports/operating_point.json"))
    args = p.parse_args()
    model = load_artefact(args.artefact)
    split = load_split(args.dataset, args.root, args.category)
    predict = numpy_predict(model)
    held_samples = split_holdout(split.train_normal)[1]
    held, _ = scores_of(predict, held_samples, model.input_size)
    test, labels = scores_of(predict, split.test, model.input_size)
    normal, defect = test[labels == 0], test[labels == 1]
    ranked = np.sort(normal)[::-1]
    rows = [{"test_normals_rejected": int((normal >= model.threshold).sum()), "threshold": model.threshold,
             "at": "operating threshold"}]
    rows += [{"test_normals_rejected": k, "threshold": float(np.nextafter(ranked[k], np.inf)), "at": "ranking"}
             for k in args.rejected if k < len(ranked)]  # the level just above the (k+1)-th highest normal
    for r in rows:
        r["false_rejects"] = float((normal >= r["threshold"]).mean())
        r["escapes"] = float((defect < r["threshold"]).mean())
    result = {"artefact": str(args.artefact), "held_out_normals": len(held),
              "held_out_highest": [round(float(s), 4) for s in np.sort(held)[::-1][:5]],
              "test_normals": len(normal), "test_defects": len(defect),
              "test_normals_highest": [round(float(s), 4) for s in ranked[:5]], "rows": rows}
    print(f"held-out normals: {len(held)}, highest scores {result['held_out_highest']}")
    print(f"test normals' highest scores {result['test_normals_highest']}")
    print("| at | threshold | test normals rejected | false rejects | escapes |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['at']} | {r['threshold']:.4f} | {r['test_normals_rejected']} | {r['false_rejects']:.2%} | "
              f"{r['escapes']:.2%} |")
    result["held_out_against_test"] = held_out_against_test(
        model, held_samples, [s for s in split.test if s.label == 0])
    quantiles = " / ".join(f"{q}" if q < 100 else "max" for q in QUANTILES)
    print(f"| part | held-out normals ({quantiles}) | test normals (the same) | AUROC test over held-out |")
    print("|---|---|---|---|")
    for r in result["held_out_against_test"]:
        print(f"| {r['part']} | {' / '.join(f'{v:.2f}' for v in r['held_out'])} | "
              f"{' / '.join(f'{v:.2f}' for v in r['test_normals'])} | {r['auroc_test_over_held_out']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
