#!/usr/bin/env python3
"""Ablation benchmark: on one split, in one run, train and measure
the memory-bank baseline, KMDGAN without the adversarial term, KMDGAN without each module in turn,
and the full KMDGAN. Beside the full model: the same weights with the map blend off, with the map
both ways round (`mirror_map`), re-calibrated with each other score setting, and re-cut with each
other `cut_defects` / `cut_rule`. Prints one
table (every protocol metric, the mask cut, training time, time per image) and writes the same as
JSON.

    python tools/ablation.py --dataset magnetic-tile --root ../shared/data/magnetic-tile
    python tools/ablation.py --variants baseline full "tversky_beta=0.5" "modules={adversarial: false}; iterations=1500"

A row may also be key=value settings over the defaults, as in tools/validate_defects.py (several
separated by ';'). Rows share the run's features and memory banks; a row that changes what those
depend on (variants.PREPARED_KEYS, e.g. input_size=320) gets its own, built once for every row
that asks for the same.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
import typing
from pathlib import Path

from variants import PREPARED_KEYS, cut_text, variant_config

from edge_inspector import __version__
from edge_inspector.config import KMDGANModelConfig, MemoryBankModelConfig
from edge_inspector.data import load_split
from edge_inspector.evaluation.harness import METRIC_NAMES, evaluate
from edge_inspector.inspection.frame import numpy_predict
from edge_inspector.model.kmdgan.artefact import save_artefact
from edge_inspector.model.kmdgan.pixel_threshold import choose_pixel_threshold
from edge_inspector.model.kmdgan.score_calibration import calibrate_scores
from edge_inspector.model.kmdgan.training import prepare, train_kmdgan
from edge_inspector.model.memory_bank.fitting import fit_memory_bank
from edge_inspector.model.scoring import THRESHOLD_RULES

MASK_SCORE_FLOOR = 0.5  # a recalibrated row's floor where the model has none: the mask head's own decision level
PARTS = ["adversarial", "memory_matching", "cross_scale_fusion", "map_modulation", "edge_context"]
COLUMNS = list(METRIC_NAMES)
MASK_COLUMNS = {"mask_iou": "mask IoU", "area_within_0.5_2": "areas within 0.5-2",
                "spurious_share": "good with a region"}
# the verdict where NG also needs a region (threshold.min_defect_area 1; harness "verdict_needing_a_region")
GATED_COLUMNS = {"false_reject_rate": "false rejects, NG needing a region",
                 "escape_rate": "escapes, NG needing a region"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="magnetic-tile")
    p.add_argument("--root", type=Path, default=Path("../shared/data/magnetic-tile"))
    p.add_argument("--category")
    p.add_argument("--profile", default="fast", choices=["fast", "full"])
    p.add_argument("--iterations", type=int, help="training iterations of every KMDGAN variant (default: the profile's)")
    p.add_argument("--variants", nargs="*",
                   help="run only these rows (baseline, full, without-<part>, key=value settings)")
    p.add_argument("--bank-size", type=int, help="memory entries per matched stride (default: the config's)")
    p.add_argument("--sampler", choices=["random", "coreset"], help="bank subsampling (default: the config's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path("reports/ablation"))
    p.add_argument("--out", type=Path, default=Path("reports/ablation.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)

    split = load_split(args.dataset, args.root, args.category)
    rows = ["baseline", "full"] + [f"without-{part}" for part in PARTS]
    rows = [r for r in rows if not args.variants or r in args.variants]
    rows += [v for v in args.variants or [] if v not in rows and "=" in v]
    results = {}
    bank = {k: v for k, v in (("bank_size", args.bank_size), ("sampler", args.sampler)) if v is not None}
    # features, memory banks and nearest memories, per PREPARED_KEYS settings: computed once
    preparations: dict[str, object] = {}
    for row in rows:
        started = time.perf_counter()
        if row == "baseline":
            cfg = MemoryBankModelConfig(kind="memory-bank")
            model = fit_memory_bank(split, cfg, 0.01, seed=args.seed, progress=False)
            threshold, size = float(model.threshold), cfg.input_size
        else:
            cfg = variant_config(row_settings(row), profile=args.profile, iterations=args.iterations, **bank)
            name = row.replace("/", "_").replace(" ", "")
            prepared = preparation_for(preparations, split, cfg, args.seed)
            model = train_kmdgan(split, cfg, args.workdir / f"{name}.safetensors", 0.01, seed=args.seed,
                                 prepared=prepared)
            threshold, size = model.threshold, cfg.input_size
        # a KMDGAN row counts the shared preparation too: what training it alone would cost
        train_s = model.meta["training"]["seconds"] if row != "baseline" else time.perf_counter() - started
        # the mask the service ships: a KMDGAN row's own cut, chosen on training data; the baseline's
        # map is a distance with no level chosen for it, so it has none
        cut = {} if row == "baseline" else {"pixel_threshold": model.pixel_threshold, "extent": model.pixel_extent}
        result = evaluate(numpy_predict(model), split, size, threshold, batch_size=1, progress=False, **cut)
        result["train_seconds"] = round(train_s, 1)
        results[row] = result
        print(f"{row}: {result['metrics']} train {train_s:.0f} s, {result['ms_per_image']} ms/image", flush=True)
        blend = model.model.arch.map_blend if row != "baseline" else "none"
        if row == "full" and model.model.arch.blend != "none":
            # the map blend is inference only: the same trained model, its learned mask alone as the map
            model.model.arch.map_blend = "none"
            result = evaluate(numpy_predict(model), split, size, threshold, batch_size=1, progress=False, **cut)
            model.model.arch.map_blend = blend
            result["train_seconds"] = round(train_s, 1)
            results["full, mask only (no map blend)"] = result
            print(f"full, mask only: {result['metrics']}", flush=True)
        if row == "full":
            # the cut is chosen after training: the same model and threshold, the cut chosen by each
            # other value of `model.cut_defects` and `model.cut_rule`
            for key in ("cut_defects", "cut_rule"):
                for value in typing.get_args(KMDGANModelConfig.model_fields[key].annotation):
                    if value != getattr(cfg, key):
                        name = f"full, {key} {value}"
                        choice = {"defects": cfg.cut_defects, "rule": cfg.cut_rule, "fixed": cfg.fixed_cut,
                                  key.removeprefix("cut_"): value}
                        results[name] = recut(split, model, prepared.holdout, choice, args.seed, threshold, train_s)
                        print(f"{name}: {results[name]['metrics']}", flush=True)
        if row == "full" and not model.model.arch.mirror_map:
            # the map both ways round is inference only: the same model and threshold (the score is
            # the image's own pass), the cut re-chosen on the map as it then ships
            model.model.arch.mirror_map = True
            choice = {"defects": cfg.cut_defects, "rule": cfg.cut_rule, "fixed": cfg.fixed_cut}
            results["full, mirror_map true"] = recut(split, model, prepared.holdout, choice, args.seed, threshold,
                                                     train_s)
            model.model.arch.mirror_map = False
            print(f"full, mirror_map true: {results['full, mirror_map true']['metrics']}", flush=True)
        if row == "full" and model.model.matched:
            # set after training: the same weights with the other score scaling, the other threshold
            # rule, a floor under the score's mask part, that part from the blended map or from the
            # mask's logits, each its own operating threshold from the same held-out normals
            others = [{key: next(v for v in values if v != getattr(model.model.arch, key))}
                      for key, values in (("score_scale", ("spread", "gap")), ("threshold_rule", THRESHOLD_RULES))]
            floor = model.model.arch.mask_score_floor
            others.append({"mask_score_floor": 0.0 if floor else MASK_SCORE_FLOOR})
            if not model.model.arch.score_from_map and model.model.arch.blend != "none":
                others.append({"score_from_map": True})
            if model.model.arch.mask_score == "probability" and not floor:
                others.append({"mask_score": "logit"})
            # the held-out normals scored with the other `held_out_twin` (not an architecture setting)
            others.append({"held_out_twin": "kept" if cfg.held_out_twin == "left_out" else "left_out"})
            for settings in others:
                name = "full, " + ", ".join(f"{k} {v}" for k, v in settings.items())
                results[name] = recalibrated(args, split, model, prepared, settings, train_s, cut)
                print(f"{name}: {results[name]['metrics']}", flush=True)

        _write(args, split, results)  # after every row: an interrupted run keeps what it measured

    header = ["variant", *COLUMNS, "cut (threshold / extent)", *MASK_COLUMNS.values(), *GATED_COLUMNS.values(),
              "train s", "ms/image"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, r in results.items():
        mask, gated = r.get("mask_at_operating_point") or {}, r.get("verdict_needing_a_region") or {}
        lines.append("| " + " | ".join([row, *(f"{r['metrics'][c]:.4f}" for c in COLUMNS),
                                        cut_text(mask.get("pixel_threshold"), mask.get("extent")),
                                        *(_cell(mask.get(c)) for c in MASK_COLUMNS),
                                        *(_cell(gated.get(c)) for c in GATED_COLUMNS),
                                        f"{r['train_seconds']:.0f}", f"{r['ms_per_image']:.0f}"]) + " |")
    print("\n".join(lines))
    print(f"JSON: {args.out}")
    return 0


def preparation_for(preparations: dict, split, cfg: KMDGANModelConfig, seed: int):
    """The features, memory banks and nearest memories a row trains on (prepare()), cached in
    preparations by the row's PREPARED_KEYS. Built with the default modules, so that a row without
    memory matching shares the full model's (and the full model finds its banks there)."""
    key = cfg.model_dump_json(include=set(PREPARED_KEYS))
    if key not in preparations:
        base = KMDGANModelConfig(kind="kmdgan", profile=cfg.profile,
                                 **{k: getattr(cfg, k) for k in PREPARED_KEYS})
        preparations[key] = prepare(split, base, seed)
    return preparations[key]


def recalibrated(args, split, model, prepared, settings: dict, train_s: float, cut: dict) -> dict:
    """The test figures of the trained model with score-calibration settings changed (score
    calibration re-run on its held-out normals, a new operating threshold; the map is unchanged).
    Its artefact goes beside the row's, with its own held-out record; the model is left as it was."""
    alt = copy.deepcopy(model)
    twin = settings.get("held_out_twin", model.meta["training"].get("held_out_twin", "kept"))
    twins = settings.get("held_out_twins", model.meta["training"].get("held_out_twins", 1))
    for key, value in settings.items():
        if key not in ("held_out_twin", "held_out_twins"):
            setattr(alt.model.arch, key, value)
    size = alt.input_size
    threshold = calibrate_scores(alt.model, alt.banks, prepared.holdout, split.few_shot, size, 0.01,
                                 prepared.leave_out(twins) if twin == "left_out" else None)
    result = evaluate(numpy_predict(alt), split, size, threshold, batch_size=1, progress=False, **cut)
    result["train_seconds"] = round(train_s, 1)
    result["threshold"] = threshold
    training = {**alt.meta["training"], "threshold_held_out": alt.model.threshold_record,
                "distance_score_validation_auroc": getattr(alt.model, "validation", {})}
    name = "-".join(f"{k}-{v}" for k, v in settings.items())
    save_artefact(args.workdir / f"full-{name}.safetensors", alt.model, alt.banks, threshold, size,
                  training, alt.pixel_threshold, alt.pixel_extent)
    return result


def recut(split, model, holdout, choice: dict, seed: int, threshold: float, train_s: float) -> dict:
    """The test figures of the trained model with its mask cut re-chosen as `train` chooses it, with
    choose_pixel_threshold's defects and rule as choice gives them."""
    level, extent, _ = choose_pixel_threshold(model.model, model.banks, holdout, split.few_shot, model.input_size,
                                              seed, **choice)
    result = evaluate(numpy_predict(model), split, model.input_size, threshold, batch_size=1, progress=False,
                      pixel_threshold=level, extent=extent)
    result["train_seconds"] = round(train_s, 1)
    return result


def row_settings(row: str) -> str:
    """A KMDGAN row as variant settings (variants.overrides): full is the defaults."""
    if row == "full":
        return "default"
    part = row.removeprefix("without-")
    if part != row and part in PARTS:
        return f"modules={{{part}: false}}"
    return row


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _write(args, split, results) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"version": __version__, "dataset": args.dataset, "profile": args.profile,
                                    "iterations": args.iterations, "seed": args.seed,
                                    "bank_size": args.bank_size, "sampler": args.sampler, "split": split.sizes(),
                                    "results": results}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
