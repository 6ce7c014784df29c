"""`edge-inspector eval`: fit (or load) a model on a dataset's protocol split and measure it."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_inspector.verbs.dataset_options import (
    add_dataset_args,
    add_inspection_args,
    add_kmdgan_args,
    inspection_of,
    protocol_split_of,
    settings,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure a model on a dataset with the benchmark protocol's split and metrics",
        description="Fit (or load) the chosen model on the protocol's training part of a dataset, then "
        "report image AUROC, pixel AUROC, pixel AP, AUPRO, F1-max, false rejects and escapes on its "
        "test part as a table and as JSON. Settings come from --config (model, dataset, threshold), "
        "overridden by the options below.",
    )
    add_dataset_args(p)
    p.add_argument("--model", choices=["memory-bank", "kmdgan"], default=None,
                   help="model to fit and measure (default: the config's, else memory-bank)")
    p.add_argument("--artefact", type=Path, help="measure this trained KMDGAN artefact instead of training one")
    p.add_argument("--bank-size", type=int, help="memory bank entries (memory-bank: 40000; kmdgan: 8192 per scale)")
    p.add_argument("--sampler", choices=["random", "coreset"], help="memory-bank subsampling")
    add_kmdgan_args(p)
    p.add_argument("--batch-size", type=int, default=1, help="test batch size for timing (default 1)")
    add_inspection_args(p, "train (when training) and measure")
    p.add_argument("--eval-size", type=int, help="side of the grid maps and masks are compared on with --mode "
                   "(default: the model input size)")
    p.add_argument("--out", type=Path, help="JSON report path (default reports/eval-<dataset>-<model>.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_inspector.evaluation import harness
    from edge_inspector.inspection.frame import numpy_predict

    kind = args.model or ("kmdgan" if args.artefact else None)
    if kind is None and args.config:
        from edge_inspector.config import load_config

        kind = load_config(args.config).model.kind
    kind = kind or "memory-bank"
    cfg, model_cfg, threshold_cfg = settings(args, kind)
    extra = {}
    with protocol_split_of(args, cfg) as (split, name, root):
        if kind == "memory-bank":
            from edge_inspector.model.memory_bank.fitting import fit_memory_bank

            model = fit_memory_bank(split, model_cfg, threshold_cfg.target_false_reject_rate, seed=args.seed,
                                    progress=not args.quiet)
            threshold = float(model.threshold)
            pixel_threshold = threshold_cfg.pixel_threshold  # its map is a distance: no level of its own
            extent = threshold_cfg.pixel_extent
            extra = {"score_mode": model.score_mode, "score_validation_auroc": model.validation}
        else:
            from edge_inspector.inspection.tiled_training import train_station_model
            from edge_inspector.model.kmdgan.artefact import load_artefact
            from edge_inspector.model.mask_cut import cut_levels

            if args.artefact:
                model = load_artefact(args.artefact)
            else:  # trained as it is measured: on tiles with --mode tiles
                out = Path("models") / f"eval-{name}-kmdgan.safetensors"
                model = train_station_model(split, model_cfg, inspection_of(args, cfg), out,
                                            threshold_cfg.target_false_reject_rate, seed=args.seed,
                                            progress=not args.quiet)
            threshold = model.threshold
            pixel_threshold, extent = cut_levels(threshold_cfg, model)
            extra = {"artefact": str(model.path), "training": model.meta["training"],
                     "architecture": model.meta["architecture"]}
            model_cfg = model_cfg.model_copy(update={"input_size": model.input_size})
        if threshold_cfg.override is not None:
            threshold = threshold_cfg.override
        inspection = inspection_of(args, cfg)
        predict = numpy_predict(model)
        if inspection is None:
            result = harness.evaluate(predict, split, model_cfg.input_size, threshold, args.batch_size,
                                      progress=not args.quiet, pixel_threshold=pixel_threshold, extent=extent)
        else:
            result = harness.evaluate_frames(harness.frames_of(split.test), predict, model_cfg.input_size, threshold,
                                             inspection, args.eval_size or model_cfg.input_size, total=len(split.test),
                                             progress=not args.quiet, pixel_threshold=pixel_threshold, extent=extent)
            result["split"] = split.sizes()
    result.update(model=kind, dataset=name, root=str(root), model_config=model_cfg.model_dump(mode="json"),
                  seed=args.seed, **extra)
    print(harness.format_table(result))
    out = harness.write_json(result, args.out or Path("reports") / f"eval-{name}-{kind}.json")
    print(f"\nJSON report: {out}")
    return 0
