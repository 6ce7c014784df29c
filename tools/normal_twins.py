#!/usr/bin/env python3
"""Do the held-out training normals have twins in the memory bank that the test normals lack?

The operating threshold is read off held-out training normals; it holds for new good parts only
where a held-out normal relates to the bank as a new part does. Where the same physical part was
imaged several times (Magnetic Tile's MT_Free holds the same tiles under several exp<k> folders),
a held-out normal's twin sits in the bank and its memory distance comes out low: the threshold is
set too low for parts without a twin. This tool measures that on a split, from training data and
the test normals, with the bank `train` builds (the fast profile's, no trained weights needed):

- nearest neighbours by global backbone features (the mean of the pooled features): how often a
  test normal's nearest normal is another test normal, against chance;
- the memory distance that enters the image score (stride and aggregation below) of the held-out
  normals against the test normals, as AUROC (0.5 where they are drawn alike), with the bank rows
  of each held-out normal's k nearest training normals left out of its bank (k = 0 is the model).

What a trained model's threshold does on new tiles: tools/new_parts.py.

Reports only; it chooses nothing. Prints a table and writes JSON.

    python tools/normal_twins.py --root ../shared/data/magnetic-tile --out reports/normal_twins.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from new_parts import SAME_TILE, tile_number

from edge_inspector.config.station import KMDGANModelConfig
from edge_inspector.data import load_split
from edge_inspector.data.loader import iter_batches
from edge_inspector.model.kmdgan.network import STRIDES, generator_for
from edge_inspector.model.kmdgan.pool import image_means_of, prepare, set_distance_scale
from edge_inspector.model.scoring import aggregate, roc_auc, split_holdout


@torch.no_grad()
def memory_distance(model, samples, bank, owners, stride: int, mode: str, size: int, leave_out=None) -> np.ndarray:
    """The image-score memory-distance part of each sample; leave_out[j]: bank owners sample j may not match."""
    i = model.matched.index(stride)
    scores = []
    for j, b in enumerate(iter_batches(samples, size, 1)):
        f = model.features(torch.from_numpy(b.images))[STRIDES.index(stride)]
        rows = bank if leave_out is None else bank[~torch.isin(owners, torch.as_tensor(leave_out[j]))]
        q = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
        d = torch.cdist(q, rows).min(1).values.view(1, 1, *f.shape[-2:])
        scores.append(aggregate((d / (model.distance_scale[i] * model.position(i))).flatten(1), mode))
    return torch.cat(scores).numpy()


def same_num_share(queries, pool, nearest) -> float | None:
    """Magnetic Tile only (exp<k>_num_<n> names): how often a query's nearest image in the pool
    has a number within SAME_TILE of its own, i.e. is the same tile in another exp folder."""
    n = [tile_number(s) for s in queries + pool]
    if None in n:
        return None
    return float(np.mean([abs(n[i] - n[len(queries) + j]) < SAME_TILE for i, j in enumerate(nearest)]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="magnetic-tile")
    p.add_argument("--root", type=Path, default=Path("../shared/data/magnetic-tile"))
    p.add_argument("--category")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stride", type=int, default=16, help="the memory distance's stride (the models chose 16)")
    p.add_argument("--aggregation", default="mean", choices=["mean", "max", "top10"])
    p.add_argument("--leave-out", type=int, nargs="+", default=[0, 1, 2, 5])
    p.add_argument("--out", type=Path, default=Path("reports/normal_twins.json"))
    args = p.parse_args()
    split = load_split(args.dataset, args.root, args.category)
    cfg = KMDGANModelConfig(kind="kmdgan", profile="fast")
    model = generator_for(cfg).eval()
    size = cfg.input_size
    fit, held = split_holdout(split.train_normal)
    test = [s for s in split.test if s.label == 0]

    g, _ = image_means_of(model, fit + held + test, size)
    g = (g - g.mean(0)) / g.std(0).clamp_min(1e-6)
    d = torch.cdist(g, g).fill_diagonal_(float("inf"))
    n_fit, n_held = len(fit), len(held)
    test_rows = torch.arange(n_fit + n_held, len(g))
    nn_in_test = float((d[test_rows].argmin(1) >= n_fit + n_held).float().mean())
    chance = (len(test) - 1) / (len(g) - 1)
    held_to_fit = d[n_fit:n_fit + n_held, :n_fit]
    twins = same_num_share(held, fit, held_to_fit.argmin(1).tolist())
    test_twins = same_num_share(test, fit + held, d[test_rows, :n_fit + n_held].argmin(1).tolist())

    prepared = prepare(split, cfg, args.seed, progress=False)
    set_distance_scale(model, prepared.normals)
    i = model.matched.index(args.stride)
    bank, owners = prepared.banks.banks[i], prepared.banks.owners[i]
    t = memory_distance(model, test, bank, owners, args.stride, args.aggregation, size)
    labels = np.r_[np.zeros(n_held), np.ones(len(test))]
    rows = []
    for k in args.leave_out:
        leave = held_to_fit.topk(k, largest=False).indices.tolist() if k else None
        h = memory_distance(model, held, bank, owners, args.stride, args.aggregation, size, leave)
        rows.append({"left_out": k, "auroc_test_over_held_out": round(float(roc_auc(labels, np.r_[h, t])), 4),
                     "held_out_q50_90_max": [round(float(v), 4) for v in np.percentile(h, [50, 90, 100])],
                     "test_q50_90_max": [round(float(v), 4) for v in np.percentile(t, [50, 90, 100])]})

    print(f"test normals whose nearest normal is a test normal: {nn_in_test:.3f} (chance {chance:.3f})")
    if twins is not None:
        print(f"held-out normals whose nearest training normal is the same tile (exp folder): {twins:.3f}")
        print(f"test normals whose nearest training normal is the same tile: {test_twins:.3f}")
    print(f"\nmemory distance (stride {args.stride}, {args.aggregation}), {n_held} held-out against "
          f"{len(test)} test normals")
    print("| nearest training normals left out of a held-out normal's bank | AUROC test over held-out "
          "| held-out 50 / 90 / max | test 50 / 90 / max |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['left_out']} | {r['auroc_test_over_held_out']:.3f} | "
              f"{' / '.join(f'{v:.3f}' for v in r['held_out_q50_90_max'])} | "
              f"{' / '.join(f'{v:.3f}' for v in r['test_q50_90_max'])} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"test_nearest_is_test": round(nn_in_test, 4), "chance": round(chance, 4),
                                    "held_out_nearest_is_same_tile": twins,
                                    "test_nearest_training_is_same_tile": test_twins, "stride": args.stride,
                                    "aggregation": args.aggregation, "seed": args.seed, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
