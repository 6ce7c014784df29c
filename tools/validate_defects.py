#!/usr/bin/env python3
"""Real defects the training never sees, as validation: every second few-shot defect of each type
is held out (for Magnetic Tile: the second of each of the five types), each variant is trained on
the training normals and the rest of the few-shot defects, and the held-out defects (as they are
and mirrored) measure it: found at the model's operating threshold, and the mask cut as the
service cuts it (IoU, Dice, predicted / true area). The held-out training normals say how many
good images carry a region. The test part is never read: this is data a default may be chosen on
(the few-shot images inside `train`'s own validation were trained on, which flatters them).
Prints a table and writes JSON, with each held-out defect's score against the threshold, IoU,
Dice and area ratio (`per_image`): which ones are missed, and by how much.

With --check-normals, a second set of training normals (every 10th) is kept out of training
altogether (`split_check_normals`), and the false rejects at the operating threshold are counted on
them: the held-out normals cannot show those, because the threshold is set on them. Where the
images carry Magnetic Tile's names, the check normals are also scored as new tiles (each matched
without every training normal of its tile, tools/new_parts.py), with and without a synthetic
anomaly: what a line's new parts would see at the threshold.
The table gives in brackets the same counts where NG also needs a region of the shipped mask
(`threshold.min_defect_area` 1).

    python tools/validate_defects.py --variants default copy_paste=0
    python tools/validate_defects.py --variants default "synthetic_kinds=[texture, shading]"
    python tools/validate_defects.py --fold 0 --variants default
    python tools/validate_defects.py --folds 1 0 --variants default full_resolution=true
    python tools/validate_defects.py --from-artefact reports/validate-defects/default.safetensors \
        --variants default "map_strides=[8]"
    python tools/validate_defects.py --folds 1 0 \
        --from-artefact "reports/validate-defects/fold{fold}/default.safetensors" --variants default "map_strides=[8]"
    python tools/validate_defects.py --folds 1 0 --from-artefact "reports/vd/fold{fold}/default.safetensors" \
        --variants default "map_blend=max; map_strides=[8]"
    python tools/validate_defects.py --folds 1 0 --check-normals --variants "tversky_beta=0.7" default

A variant sets one key or several, separated by ';'. With --from-artefact, nothing is trained:
the variants may only change what is inference alone (INFERENCE_KEYS: the anomaly map's blend,
strides and mirror, and how the image score's parts are made and scaled, which re-runs the score
calibration and so the operating threshold); a variant may also name the
artefact's own memory settings (MEMORY_KEYS, e.g. bank_size=16384 for a model trained so), which
are checked against it, never changed; each is applied to that artefact
(trained by this tool on the same fold), its pixel threshold and extent re-chosen as `train`
chooses them, and measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from new_parts import same_tile, tile_number
from variants import PREPARED_KEYS, cut_text, overrides, variant_config

from edge_inspector import __version__
from edge_inspector.config import KMDGANModelConfig
from edge_inspector.data import load_split
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.sample import Split
from edge_inspector.data.split import hold_out_few_shot
from edge_inspector.evaluation.metrics import has_region, mask_metrics, summarise_masks
from edge_inspector.inspection.frame import numpy_predict
from edge_inspector.model.kmdgan.artefact import load_artefact
from edge_inspector.model.kmdgan.network import KMDGANArchitecture
from edge_inspector.model.kmdgan.pixel_threshold import best_extent, choose_pixel_threshold, dice_grid
from edge_inspector.model.kmdgan.pool import prepare
from edge_inspector.model.kmdgan.score_calibration import (
    calibrate_scores,
    image_scores,
    outputs,
    outputs_of,
    synthetic_batches,
)
from edge_inspector.model.kmdgan.training import train_kmdgan
from edge_inspector.model.memory_bank.search import owners_left_out
from edge_inspector.model.scoring import held_out_rejections, roc_auc, split_check_normals, split_holdout

# what --from-artefact variants may change
INFERENCE_KEYS = ("map_blend", "map_strides", "score_scale", "threshold_rule", "mask_score_floor",
                  "score_from_map", "mask_score", "mirror_map", "cut_defects", "cut_rule", "fixed_cut",
                  "held_out_twin", "held_out_twins")
# not architecture settings: they only choose the cut, or how the held-out normals are scored
CUT_KEYS = ("cut_defects", "cut_rule", "fixed_cut", "held_out_twin", "held_out_twins")
# whose variants re-run the score calibration (and so the threshold)
RECALIBRATED = ("score_scale", "threshold_rule", "mask_score_floor", "score_from_map", "mask_score", "held_out_twin",
                "held_out_twins")
TARGET_FALSE_REJECTS = 0.01
SYNTHETIC_SEED = 7  # the check normals' synthetic anomalies; score calibration's own draws use 0
COLUMNS = ("mask_iou", "mask_dice", "area_ratio_median", "area_within_0.5_2")


def maps_and_scores(predict, samples, size: int, batched: bool = False) -> tuple[list, list]:
    """Each sample's anomaly map and image score, as the service computes them. batched: samples
    are model-input batches already (synthetic_batches)."""
    maps, scores = [], []
    for images in samples if batched else (batch.images for batch in iter_batches(samples, size, 8)):
        m, s = predict(images)
        maps += list(m)
        scores += list(s)
    return maps, scores


def false_rejects(model, check: list, size: int) -> dict:
    """Good images that training never saw, judged at the operating threshold: rejected (score at or
    above it), the rate's 95 % upper bound, and how many carry a region at the pixel threshold.
    Beside them, the same images with one synthetic anomaly each (the training kinds in turn, a seed
    training does not use): how many the threshold finds, for a threshold's escapes on more than the
    few held-out real defects."""
    predict = numpy_predict(model)
    maps, scores = maps_and_scores(predict, check, size)
    rejected, upper = held_out_rejections(scores, model.threshold)
    drawn_maps, drawn = maps_and_scores(predict, synthetic_batches(check, size, SYNTHETIC_SEED), size, batched=True)
    synthetic_found, _ = held_out_rejections(drawn, model.threshold)  # at or above it, in float64 as the service
    cut = mask_metrics([0] * len(maps), [None] * len(maps), maps, model.pixel_threshold, extent=model.pixel_extent)
    return {"check_normals": len(scores), "check_rejected": rejected,
            "check_false_reject_rate": round(rejected / len(scores), 4),
            "check_false_reject_upper_95": round(upper, 4),
            "check_with_region": cut["spurious_share"],
            "check_highest_scores": [round(float(x), 3) for x in np.sort(scores)[::-1][:5]],
            "check_synthetic_found": synthetic_found,
            "check_synthetic_scores_median": round(float(np.median(drawn)), 3),
            # the same verdicts where NG also needs a region (threshold.min_defect_area 1)
            "check_rejected_with_region": gated(maps, scores, model),
            "check_synthetic_found_with_region": gated(drawn_maps, drawn, model)}


def new_tile_rejects(model, check: list, size: int, leave_out) -> dict:
    """The check normals as new tiles would score (each matched without every training normal of
    its tile: leave_out, from Magnetic Tile's names), rejected at the operating threshold; and with
    the same synthetic anomalies as false_rejects(), found."""
    g, (owners, tiles) = model.model, leave_out
    scores = image_scores(g, *outputs(g, model.banks, check, size, leave_out))
    drawn = image_scores(g, *outputs_of(g, model.banks, (
        (images, (owners, owners_left_out(tiles, batch.samples)))
        for images, batch in zip(synthetic_batches(check, size, SYNTHETIC_SEED), iter_batches(check, size, 8)))))
    return {"check_new_tile_rejected": held_out_rejections(scores, model.threshold)[0],
            "check_new_tile_synthetic_found": held_out_rejections(drawn, model.threshold)[0]}


# the settings a fold's preparation depends on (modules too: matching off builds no memory);
# variants that share them share one preparation
MEMORY_KEYS = set(PREPARED_KEYS) | {"modules"}


def memory_for(prepared: dict, train_split: Split, cfg, seed: int) -> object:
    """The fold's preparation for cfg (prepare(), cached in prepared by MEMORY_KEYS): training a
    variant and measuring it on new tiles use the same one, built once."""
    key = cfg.model_dump_json(include=MEMORY_KEYS)
    if key not in prepared:
        prepared[key] = prepare(train_split, cfg, seed, progress=False)
    return prepared[key]


def fold_prepared(prepared: dict, train_split: Split, cfg, seed: int, model, path) -> object:
    """memory_for(), checked against the model's memory: the bank owners that leaving training
    normals out needs (an artefact does not keep them)."""
    found = memory_for(prepared, train_split, cfg, seed)
    if not found.banks.hold(model.banks):
        raise SystemExit(f"{path}: its memory is not the one this fold and seed build; train it with this tool")
    return found


def gated(maps: list, scores: list, model) -> int:
    """How many images are NG where NG needs a score at or above the threshold and a region."""
    return held_out_rejections(np.asarray(scores, dtype=np.float64)[has_region(maps, model.pixel_threshold)],
                               model.threshold)[0]


def measure(model, held: list, holdout: list, size: int) -> dict:
    """Held-out defects (and their mirror images) found and cut; held-out normals with a region."""
    predict = numpy_predict(model)
    maps, scores, masks, names = [], [], [], []
    for batch in iter_batches(held, size, 8):
        for mirrored, images, truth in ((False, batch.images, batch.masks),
                                        (True, np.ascontiguousarray(batch.images[..., ::-1]), batch.masks[..., ::-1])):
            m, s = predict(images)
            maps += list(m)
            scores += list(s)
            masks += list(truth)
            names += [x.image.name + (" (mirrored)" if mirrored else "") for x in batch.samples]
    normal_maps, normal_scores = maps_and_scores(predict, holdout, size)
    labels = [1] * len(maps) + [0] * len(normal_maps)
    level, extent = model.pixel_threshold, model.pixel_extent
    # a good image's truth is never read (mask_metrics only asks whether its cut is empty)
    cut = mask_metrics(labels, masks + [None] * len(normal_maps), maps + normal_maps, level, extent=extent,
                       per_image=True)
    scores = np.asarray(scores, dtype=np.float64)
    found = scores >= model.threshold  # as the service compares
    regions = has_region(maps, level)
    # each held-out defect's own figures: which are missed, and how far below the threshold
    cut["per_image"] = [{"image": n, "score": round(float(s), 3), "found": bool(f), "region": bool(r), **figures}
                        for n, s, f, r, figures in zip(names, scores, found, regions, cut["per_image"])]
    # the image score's ranking, whatever the threshold: held-out defects against held-out normals
    auroc = roc_auc(np.asarray(labels), np.concatenate([scores, np.asarray(normal_scores, dtype=np.float64)]))
    return {"defects": len(scores), "found": int(found.sum()),
            "found_with_region": int((found & regions).sum()),  # the regions above: not cut again
            "threshold": round(float(model.threshold), 3),
            "image_auroc": round(float(auroc), 4), **cut,
            # the cut these held-out defects would choose for themselves (Dice alone, no normals)
            "held_out_dice_grid": {str(t): {str(e): round(d, 4) for e, d in row.items()}
                                   for t, row in dice_grid(maps, masks).items()}}


def best_cut(grid: dict) -> dict:
    """The (pixel threshold, extent) of a Dice grid with the highest mean Dice; extent None: plain."""
    rows = {float(t): {float(e): d for e, d in row.items()} for t, row in grid.items()}
    pairs = {t: best_extent(row) for t, row in rows.items()}
    t = max(rows, key=lambda t: rows[t][pairs[t]])
    return {"pixel_threshold": t, "extent": None if pairs[t] >= t else pairs[t], "dice": rows[t][pairs[t]]}


def inference_variant(path: Path, text: str, cfg: KMDGANModelConfig, train_split: Split, seed: int, prepared: dict):
    """The artefact with the variant's inference-only settings, its pixel levels re-chosen on
    training data as `train` chooses them. prepared: a cache of the fold's preparation, whose bank
    owners a re-calibration with `held_out_twin: left_out` needs (the artefact does not keep them)."""
    keys = set(overrides(text))
    if not keys <= set(INFERENCE_KEYS) | MEMORY_KEYS:
        raise SystemExit(f"--from-artefact: variant {text!r} changes training; only {INFERENCE_KEYS} can be varied"
                         f" (and {sorted(MEMORY_KEYS)}, to name the artefact's own memory)")
    model = load_artefact(path)
    if keys & MEMORY_KEYS:  # they describe the artefact (e.g. its bank size), never change it: checked
        fold_prepared(prepared, train_split, cfg, seed, model, path)
    _, holdout = split_holdout(train_split.train_normal)
    few_shot = train_split.few_shot
    arch = KMDGANArchitecture.from_config(cfg)
    for key in keys - set(CUT_KEYS) - MEMORY_KEYS:
        setattr(model.model.arch, key, getattr(arch, key))
    if keys & set(RECALIBRATED):
        leave_out = None
        if cfg.held_out_twin == "left_out" and model.model.matched:
            leave_out = fold_prepared(prepared, train_split, cfg, seed, model, path).leave_out(cfg.held_out_twins)
        model.meta["threshold"] = calibrate_scores(model.model, model.banks, holdout, few_shot,
                                                   model.input_size, TARGET_FALSE_REJECTS, leave_out)
    level, extent, _ = choose_pixel_threshold(model.model, model.banks, holdout, few_shot, model.input_size, seed,
                                              defects=cfg.cut_defects, rule=cfg.cut_rule,
                                              fixed=cfg.fixed_cut)
    model.meta["pixel_threshold"], model.meta["pixel_extent"] = level, extent
    return model


def run_fold(args, split, fold: int, run: dict, save) -> None:
    """Each variant trained (or applied to --from-artefact) and measured on one fold's held-out
    defects, into run; save() after each (a long run keeps what it has measured)."""
    kept, held = hold_out_few_shot(split.few_shot, fold)
    if not held:
        raise SystemExit("no few-shot defect type has two examples: nothing to hold out")
    normals, check = split_check_normals(split.train_normal) if args.check_normals else (split.train_normal, [])
    train_split = Split(train_normal=normals, few_shot=kept)
    _, holdout = split_holdout(normals)
    print(f"fold {fold}: held out {', '.join(s.image.name for s in held)}; trained on {len(kept)} defects",
          file=sys.stderr)
    workdir = args.workdir if len(args.folds) == 1 else args.workdir / f"fold{fold}"
    run["held_out"] = [s.image.name for s in held]
    results = run.setdefault("results", {})
    prepared: dict = {}
    for text in args.variants:
        cfg = variant_config(text, iterations=args.iterations)
        if args.from_artefact:
            path = Path(str(args.from_artefact).replace("{fold}", str(fold)))
            model = inference_variant(path, text, cfg, train_split, args.seed, prepared)
        else:
            model = train_kmdgan(train_split, cfg, workdir / f"{text.replace('/', '_')}.safetensors",
                                 TARGET_FALSE_REJECTS, seed=args.seed, progress=False,
                                 prepared=memory_for(prepared, train_split, cfg, args.seed))
        results[text] = measure(model, held, holdout, cfg.input_size)
        if check:
            results[text].update(false_rejects(model, check, cfg.input_size))
            if all(tile_number(s) is not None for s in check) and model.model.matched:
                owners = fold_prepared(prepared, train_split, cfg, args.seed, model, workdir).banks.owners
                tiles = same_tile(check, split_holdout(normals)[0])
                results[text].update(new_tile_rejects(model, check, cfg.input_size, (owners, tiles)))
        results[text]["train_seconds"] = model.meta["training"]["seconds"]
        print(f"fold {fold}, {text}: {results[text]}", file=sys.stderr, flush=True)
        save()


def pooled(folds: dict) -> dict:
    """Per variant, the figures over every fold's held-out images together (what a default is
    chosen on: one fold's five defects are too few). Variants not yet measured on every fold are left out."""
    out = {}
    for text in next(iter(folds.values()))["results"]:
        if any(text not in f["results"] for f in folds.values()):
            continue
        runs = [f["results"][text] for f in folds.values()]
        out[text] = {"defects": sum(r["defects"] for r in runs), "found": sum(r["found"] for r in runs),
                     "found_with_region": sum(r["found_with_region"] for r in runs),
                     **summarise_masks([p for r in runs for p in r["per_image"]]),
                     "spurious_share": round(float(np.mean([r["spurious_share"] for r in runs])), 4),
                     # each fold's scores are on their own model's scale: the folds' mean, not one ranking
                     "image_auroc": round(float(np.mean([r["image_auroc"] for r in runs])), 4),
                     "train_seconds": sum(r["train_seconds"] for r in runs)}
        if all("held_out_dice_grid" in r for r in runs):  # folds of equal size: the grids' mean
            grids = [r["held_out_dice_grid"] for r in runs]
            out[text]["held_out_dice_grid"] = {t: {e: round(float(np.mean([g[t][e] for g in grids])), 4) for e in row}
                                               for t, row in grids[0].items()}
        if all("check_rejected" in r for r in runs):  # each fold's own threshold: the counts add up
            rejected, n = sum(r["check_rejected"] for r in runs), sum(r["check_normals"] for r in runs)
            out[text].update(check_normals=n, check_rejected=rejected,
                             check_false_reject_rate=round(rejected / n, 4),
                             check_synthetic_found=sum(r["check_synthetic_found"] for r in runs),
                             **{k: sum(r[k] for r in runs) for k in ("check_new_tile_rejected",
                                                                     "check_new_tile_synthetic_found")
                                if all(k in r for r in runs)},
                             check_rejected_with_region=sum(r["check_rejected_with_region"] for r in runs),
                             check_synthetic_found_with_region=sum(r["check_synthetic_found_with_region"]
                                                                   for r in runs))
    return out


def table(rows: dict) -> list[str]:
    header = ["fold", "variant", "held-out defects found (NG needing a region)", "image AUROC", *COLUMNS,
              "held-out normals with a region", "cut (threshold / extent)",
              "best cut on the held-out defects (Dice)", "train s"]
    checked = all("check_rejected" in r for r in rows.values())
    header += ["check normals rejected (NG needing a region)",
               "synthetic on check normals found (NG needing a region)"] if checked else []
    new_tiles = checked and all("check_new_tile_rejected" in r for r in rows.values())
    header += ["as new tiles: check normals rejected", "synthetic on them found"] if new_tiles else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (fold, text), r in rows.items():
        cells = [fold, text, f"{r['found']} ({r.get('found_with_region', '-')}) of {r['defects']}",
                 f"{r['image_auroc']:.3f}"]
        cells += ["-" if r[c] is None else f"{r[c]:.3f}" for c in COLUMNS]
        cells += [f"{r['spurious_share']:.3f}", cut_text(r.get("pixel_threshold"), r.get("extent"))]
        best = best_cut(r["held_out_dice_grid"]) if "held_out_dice_grid" in r else None
        cells += [f"{cut_text(best['pixel_threshold'], best['extent'])} ({best['dice']:.3f})" if best else "-",
                  f"{r['train_seconds']:.0f}"]
        if checked:
            cells += [f"{r['check_rejected']} ({r.get('check_rejected_with_region', '-')}) of {r['check_normals']}",
                      f"{r['check_synthetic_found']} ({r.get('check_synthetic_found_with_region', '-')}) "
                      f"of {r['check_normals']}"]
        if new_tiles:
            cells += [f"{r['check_new_tile_rejected']} of {r['check_normals']}",
                      f"{r['check_new_tile_synthetic_found']} of {r['check_normals']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="magnetic-tile")
    p.add_argument("--root", type=Path, default=Path("../shared/data/magnetic-tile"))
    p.add_argument("--category")
    p.add_argument("--variants", nargs="+", default=["default"],
                   help="'default' or key=value over the default model config, e.g. copy_paste=0")
    p.add_argument("--iterations", type=int, help="training iterations (default: the fast profile's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fold", "--folds", dest="folds", type=int, nargs="+", choices=(0, 1), default=[1],
                   help="1: each type's second defect is held out; 0: its first; '--folds 1 0': both, "
                        "with the figures over both folds' images together")
    p.add_argument("--from-artefact", type=Path,
                   help="an artefact this tool trained on the same fold ('{fold}' in the path stands for "
                        "it): variants change its inference only")
    p.add_argument("--check-normals", action="store_true",
                   help="keep every 10th training normal out of training and count the false rejects on them "
                        "(the models then train on a tenth fewer normals; give it again with --from-artefact on "
                        "such a run's artefacts)")
    p.add_argument("--workdir", type=Path, default=Path("reports/validate-defects"),
                   help="where the variants' artefacts go (in fold0/ and fold1/ under it for both folds)")
    p.add_argument("--out", type=Path, default=Path("reports/validate_defects.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    args.folds = list(dict.fromkeys(args.folds))
    split = load_split(args.dataset, args.root, args.category)
    folds: dict[int, dict] = {}

    def save() -> None:
        report = {"version": __version__, "dataset": args.dataset, "seed": args.seed, "iterations": args.iterations,
                  "folds": folds, "pooled": pooled(folds) if len(folds) > 1 else None}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")

    for fold in args.folds:
        run_fold(args, split, fold, folds.setdefault(fold, {}), save)
    rows = {(str(f), text): r for f, run in folds.items() for text, r in run["results"].items()}
    if len(folds) > 1:
        rows.update({("both", text): r for text, r in pooled(folds).items()})
    print("\n".join(table(rows)))
    for (fold, text), r in rows.items():  # a station with defects enough to hold out may fix its cut there
        if fold == ("both" if len(folds) > 1 else str(args.folds[0])) and "held_out_dice_grid" in r:
            best = best_cut(r["held_out_dice_grid"])
            extent = "null" if best["extent"] is None else f"{best['extent']:g}"
            print(f"{text}: the held-out defects' own best cut, as a station file sets it: model: {{cut_rule: fixed, "
                  f"fixed_cut: [{best['pixel_threshold']:g}, {extent}]}} (mean Dice {best['dice']:.3f})")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
