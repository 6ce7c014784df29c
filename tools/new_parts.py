#!/usr/bin/env python3
"""How does the operating threshold hold on parts whose images the memory has never seen?

On a line every part is new; the memory holds the calibration parts. Magnetic Tile images each
tile six times (exp1..exp6, consecutive numbers), so a held-out training normal, and 71 % of the
test normals, find the same tile in the memory (tools/normal_twins.py). This tool re-calibrates one
trained artefact (the same weights; the score's composition, scales and threshold re-chosen on the
same held-out normals, as `train` does) under each way of scoring the held-out normals:

- kept: against the whole memory;
- nearest k (`held_out_twin: left_out`, `held_out_twins: k`): without their k nearest training
  normals' memory rows;
- tile: without every training normal of the same tile (a number within 200 of its own; Magnetic
  Tile names only, so not a product setting: the reference the generic rules are judged against).

For each it reports, from training data: the threshold and how many held-out normals scored as new
tiles reach it; and from the test part (reports only): the test normals rejected and the defects
let pass, as the images are and as new tiles (each scored without its tile's training normals),
and image AUROC both ways; and each score part alone as AUROC, both ways.

With --baseline, the memory-bank baseline too, fitted as tools/ablation.py fits it (its bank rows
know their image: `fit_memory_bank`'s owners): its score aggregation and threshold chosen on the
held-out normals as they are (`kept`, the baseline as it ships) and as new tiles (`tile`), each
test image scored as it is and as a new tile.

    python tools/new_parts.py --artefact reports/ablation/full.safetensors --out reports/new_parts.json
    python tools/new_parts.py --artefact reports/ablation/full.safetensors --nearest 1 --baseline
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from pathlib import Path

import numpy as np

from edge_inspector.config.station import KMDGANModelConfig, MemoryBankModelConfig
from edge_inspector.data import load_split
from edge_inspector.model.kmdgan.artefact import load_artefact
from edge_inspector.model.kmdgan.pool import prepare
from edge_inspector.model.kmdgan.score_calibration import calibrate_scores, image_scores, outputs
from edge_inspector.model.memory_bank.fitting import fit_memory_bank, patch_distances
from edge_inspector.model.scoring import (
    SCORE_MODES,
    aggregate,
    choose_score_mode,
    roc_auc,
    split_holdout,
    threshold_from_normals,
)

TARGET_FALSE_REJECTS = 0.01
SAME_TILE = 200  # Magnetic Tile: the six images of one tile lie within about 150 numbers


def tile_number(sample) -> int | None:
    m = re.search(r"num_(\d+)", sample.image.name)
    return int(m.group(1)) if m else None


def same_tile(samples, fit) -> dict:
    """{sample: indices of the training normals (bank owners) of the same tile}."""
    numbers = np.array([tile_number(s) if tile_number(s) is not None else -10**9 for s in fit])
    out = {}
    for s in samples:
        n = tile_number(s)
        out[s] = [] if n is None else np.flatnonzero(np.abs(numbers - n) < SAME_TILE).tolist()
    return out


def part_aurocs(g, held: tuple, few: tuple, labels: np.ndarray, test: tuple) -> dict:
    """Each score part alone (the mask's top-k mean; each matched stride's memory distance under
    each aggregation), as AUROC: held-out normals against the few-shot defects (training data; the
    network was trained on those defects, so the mask part's figure is optimistic) and the test part."""
    def parts(out) -> dict:
        prob, dists = out
        found = {"mask top-k": g.score_parts(prob, [])[:, 0].numpy()}
        for stride, d in zip(g.matched, dists):
            for mode in SCORE_MODES:
                found[f"stride {stride} {mode}"] = aggregate(d.flatten(1), mode).numpy()
        return found

    h, f, t = parts(held), parts(few), parts(test)
    train_labels = np.r_[np.zeros(len(held[0])), np.ones(len(few[0]))]
    return {k: {"training": round(float(roc_auc(train_labels, np.r_[h[k], f[k]])), 4),
                "test": round(float(roc_auc(labels, t[k])), 4)} for k in f}


def baseline_rows(split, seed: int, holdout, test, labels: np.ndarray, tiles_held: dict, tiles_test: dict
                  ) -> list[dict]:
    """The memory-bank baseline under the `kept` and `tile` rules (see the module's docstring)."""
    cfg = MemoryBankModelConfig(kind="memory-bank")
    model = fit_memory_bank(split, cfg, TARGET_FALSE_REJECTS, seed=seed, progress=False)
    size = cfg.input_size
    as_is, new = patch_distances(model, test, size), patch_distances(model, test, size, leave_out=tiles_test)
    held_new = patch_distances(model, holdout, size, leave_out=tiles_held)
    # kept: the aggregation and threshold fit_memory_bank chose on the held-out normals as they are
    kept = (model.score_mode, float(model.threshold))
    tile_mode = choose_score_mode(held_new, patch_distances(model, split.few_shot, size))[0] \
        if cfg.score == "auto" else cfg.score
    tile = (tile_mode, threshold_from_normals(aggregate(held_new, tile_mode).numpy(), TARGET_FALSE_REJECTS))
    return [row(f"baseline, {name}", threshold, mode, aggregate(held_new, mode).numpy() >= threshold,
                aggregate(as_is, mode).numpy(), aggregate(new, mode).numpy(), labels)
            for name, (mode, threshold) in (("kept", kept), ("tile", tile))]


def row(name: str, threshold: float, distance_part: str, held_new_rejected: np.ndarray, as_is: np.ndarray,
        new: np.ndarray, labels: np.ndarray) -> dict:
    """One rule's figures at its threshold: the held-out normals scored as new tiles that reach it,
    and the test images scored as they are and as new tiles."""
    good, bad = labels == 0, labels == 1
    return {
        "held_out": name, "threshold": round(float(threshold), 4), "distance_part": distance_part,
        "held_out_as_new_tiles_rejected": int(held_new_rejected.sum()),
        "test_false_rejects": round(float((as_is[good] >= threshold).mean()), 4),
        "test_escapes": round(float((as_is[bad] < threshold).mean()), 4),
        "new_tiles_false_rejects": round(float((new[good] >= threshold).mean()), 4),
        "new_tiles_escapes": round(float((new[bad] < threshold).mean()), 4),
        "test_auroc": round(float(roc_auc(labels, as_is)), 4),
        "new_tiles_auroc": round(float(roc_auc(labels, new)), 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artefact", type=Path, required=True, help="trained on this split with --seed")
    p.add_argument("--dataset", default="magnetic-tile")
    p.add_argument("--root", type=Path, default=Path("../shared/data/magnetic-tile"))
    p.add_argument("--category")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nearest", type=int, nargs="+", default=[1, 2, 3, 5, 8])
    p.add_argument("--baseline", action="store_true", help="the memory-bank baseline too")
    p.add_argument("--out", type=Path, default=Path("reports/new_parts.json"))
    args = p.parse_args()
    split = load_split(args.dataset, args.root, args.category)
    loaded = load_artefact(args.artefact)
    cfg = KMDGANModelConfig(kind="kmdgan", profile="fast", input_size=loaded.input_size)
    prepared = prepare(split, cfg, args.seed, progress=False)
    if not prepared.banks.hold(loaded.banks):
        raise SystemExit(f"{args.artefact}: its memory is not the one this split and seed build")
    fit, holdout = split_holdout(split.train_normal)
    size, banks, owners = loaded.input_size, loaded.banks, prepared.banks.owners
    test = list(split.test)
    labels = np.array([s.label for s in test])
    g = loaded.model
    # the network's outputs do not depend on the calibration: each set computed once
    test_as_is = outputs(g, banks, test, size)
    test_new = outputs(g, banks, test, size, (owners, same_tile(test, fit)))
    tile_rule = same_tile(holdout, fit)
    held_new = outputs(g, banks, holdout, size, (owners, tile_rule))

    rules = [("kept", None)] + [(f"nearest {k}", prepared.leave_out(k)) for k in args.nearest]
    rules.append(("tile", (owners, tile_rule)))
    rows = []
    for name, leave_out in rules:
        model = copy.deepcopy(g)
        threshold = calibrate_scores(model, banks, holdout, split.few_shot, size, TARGET_FALSE_REJECTS, leave_out)
        held, as_is, new = (image_scores(model, *o) for o in (held_new, test_as_is, test_new))
        rows.append(row(name, threshold, f"stride {model.arch.distance_stride} {model.arch.distance_score}",
                        held >= threshold, as_is, new, labels))
    if args.baseline:
        rows += baseline_rows(split, args.seed, holdout, test, labels, tile_rule, same_tile(test, fit))
    few = outputs(g, banks, split.few_shot, size)
    parts = {"as new tiles": part_aurocs(g, held_new, few, labels, test_new),
             "as they are": part_aurocs(g, outputs(g, banks, holdout, size), few, labels, test_as_is)}
    n_held = len(holdout)
    print(f"{args.artefact}: {n_held} held-out normals; test part {int((labels == 0).sum())} normals, "
          f"{int(labels.sum())} defects")
    print("| held-out normals scored | distance part | threshold | held-out normals as new tiles at or above it "
          "| test false rejects / escapes | as new tiles | image AUROC test / as new tiles |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['held_out']} | {r['distance_part']} | {r['threshold']:.3f} | "
              f"{r['held_out_as_new_tiles_rejected']} of {n_held} | "
              f"{100 * r['test_false_rejects']:.2f} % / {100 * r['test_escapes']:.2f} % | "
              f"{100 * r['new_tiles_false_rejects']:.2f} % / {100 * r['new_tiles_escapes']:.2f} % | "
              f"{r['test_auroc']:.4f} / {r['new_tiles_auroc']:.4f} |")
    print("\n| score part alone (AUROC) | training: held-out normals against the few-shot defects, as new tiles "
          "/ as they are | test: as new tiles / as they are |\n|---|---|---|")
    for k, new in parts["as new tiles"].items():
        old = parts["as they are"][k]
        print(f"| {k} | {new['training']:.3f} / {old['training']:.3f} | {new['test']:.3f} / {old['test']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"artefact": str(args.artefact), "seed": args.seed, "held_out_normals": n_held,
                                    "rows": rows, "parts": parts}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
