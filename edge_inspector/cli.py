"""The `edge-inspector` command: one verb per job on the line PC."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
from pathlib import Path

from edge_inspector import __version__
from edge_inspector.errors import UserError

log = logging.getLogger("edge_inspector")

LAYOUT_CHOICES = ["folder", "magnetic-tile", "mvtec", "visa", "synthetic"]


def _dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="station YAML; its model, dataset and threshold sections are used")
    p.add_argument("--dataset", choices=LAYOUT_CHOICES,
                   help="dataset layout; 'synthetic' makes a small product set itself (no files needed)")
    p.add_argument("--root", type=Path, help="dataset folder (for synthetic: where to write it; default a temp dir)")
    p.add_argument("--category", help="MVTec AD category, VisA object or folder sub-directory")
    p.add_argument("--input-size", type=int, help="model input size in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _kmdgan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=["fast", "full"], help="KMDGAN training profile (fast: 2-core CPU; full: GPU)")
    p.add_argument("--iterations", type=int, help="KMDGAN training iterations (default: the profile's)")
    p.add_argument("--without", action="append", default=[], metavar="PART",
                   choices=["memory_matching", "cross_scale_fusion", "map_modulation", "edge_context", "adversarial"],
                   help="switch a KMDGAN part off (repeatable), for ablations")


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure a model on a dataset with the benchmark protocol's split and metrics",
        description="Fit (or load) the chosen model on the protocol's training part of a dataset, then "
        "report image AUROC, pixel AUROC, pixel AP, AUPRO, F1-max, false rejects and escapes on its "
        "test part as a table and as JSON. Settings come from --config (model, dataset, threshold), "
        "overridden by the options below.",
    )
    _dataset_args(p)
    p.add_argument("--model", choices=["memory-bank", "kmdgan"], default=None,
                   help="model to fit and measure (default: the config's, else memory-bank)")
    p.add_argument("--artefact", type=Path, help="measure this trained KMDGAN artefact instead of training one")
    p.add_argument("--bank-size", type=int, help="memory bank entries (memory-bank: 40000; kmdgan: 8192 per scale)")
    p.add_argument("--sampler", choices=["random", "coreset"], help="memory-bank subsampling")
    _kmdgan_args(p)
    p.add_argument("--batch-size", type=int, default=1, help="test batch size for timing (default 1)")
    p.add_argument("--mode", choices=["resize", "tiles"], help="inspect each test image as the line service "
                   "does: read at its own resolution, resized or cut into tiles (default: the config's "
                   "inspection section where --mode or a config is given, else the protocol's plain resize)")
    p.add_argument("--tile-size", type=int, help="tile side in image pixels (tiles mode; default: model input)")
    p.add_argument("--overlap", type=float, help="share of a tile overlapping its neighbour (tiles mode)")
    p.add_argument("--eval-size", type=int, help="side of the grid maps and masks are compared on with --mode "
                   "(default: the model input size)")
    p.add_argument("--out", type=Path, help="JSON report path (default reports/eval-<dataset>-<model>.json)")
    p.set_defaults(func=cmd_eval)


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train KMDGAN on a station's normals and a few real defects; writes one model artefact",
        description="Train the KMDGAN generator (with its discriminator) on the training normals, "
        "synthetic anomalies and at most 10 real anomalies of the protocol split, choose the operating "
        "threshold on held-out training normals, and write one artefact (safetensors) under models/. "
        "A checkpoint beside it every 50 iterations lets --resume continue an interrupted run.",
    )
    _dataset_args(p)
    _kmdgan_args(p)
    p.add_argument("--bank-size", type=int, help="memory entries per matched scale (default 8192)")
    p.add_argument("--sampler", choices=["random", "coreset"], help="bank subsampling (default coreset)")
    p.add_argument("--out", type=Path, help="artefact path (default models/<station or dataset>.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    p.add_argument("--device", default=None, help="torch device for training, e.g. cuda:0 (default: the config's "
                   "runtime.device, else cpu)")
    p.set_defaults(func=cmd_train)


def _inspection(args: argparse.Namespace, cfg):
    """The inspection settings eval uses with --mode (or a config with an inspection section), else None."""
    from edge_inspector.config import InspectionConfig

    explicit = args.mode or args.tile_size or args.overlap is not None
    if not explicit and not (cfg and "inspection" in cfg.model_fields_set):
        return None
    base = cfg.inspection.model_dump() if cfg else {}
    updates = {"mode": args.mode, "tile_size": args.tile_size, "overlap": args.overlap}
    return InspectionConfig.model_validate({**base, **{k: v for k, v in updates.items() if v is not None}})


def _settings(args: argparse.Namespace, kind: str):
    """(station config or None, model config of this kind, threshold config) from --config and options."""
    from edge_inspector.config import KMDGANModelConfig, MemoryBankModelConfig, ThresholdConfig, load_config

    cfg = load_config(args.config) if args.config else None
    models = {"memory-bank": MemoryBankModelConfig, "kmdgan": KMDGANModelConfig}
    base = cfg.model.model_dump() if cfg and cfg.model.kind == kind else {"kind": kind}
    updates = {"input_size": args.input_size, "bank_size": args.bank_size, "sampler": getattr(args, "sampler", None)}
    if kind != "memory-bank":
        updates.update(profile=args.profile, iterations=args.iterations)
        if args.without:
            base.setdefault("modules", {})
            base["modules"] = {**base["modules"], **{part: False for part in args.without}}
    model_cfg = models[kind].model_validate({**base, **{k: v for k, v in updates.items() if v is not None}})
    return cfg, model_cfg, cfg.threshold if cfg else ThresholdConfig()


@contextlib.contextmanager
def _split(args: argparse.Namespace, cfg):
    """The protocol split of the chosen dataset, and its name; a synthetic set lives as long as this."""
    from edge_inspector.data import load_split

    dataset = cfg.dataset if cfg and cfg.dataset else None
    layout = args.dataset or (dataset.layout if dataset else None)
    root = args.root or (dataset.root if dataset else None)
    category = args.category or (dataset.category if dataset else None)
    if layout is None:
        raise UserError(f"{args.verb} needs --dataset (or a dataset section in --config)")
    with tempfile.TemporaryDirectory(prefix="edge-inspector-") as tmp:
        if layout == "synthetic":
            from edge_inspector.data.synthetic_product import write_product_set

            root = write_product_set(root or Path(tmp) / "product", seed=args.seed)
            log.info("synthetic product set written to %s", root)
            layout, name = "folder", "synthetic"
        elif root is None:
            raise UserError(f"{args.verb} --dataset {layout} needs --root (the dataset folder)")
        else:
            name = layout if not category else f"{layout}-{category}"
        split = load_split(layout, root, category)
        if not split.train_normal or not split.test_normal or not split.test_anomalous:
            missing = "training normals" if not split.train_normal else "test images of both kinds"
            raise UserError(f"{root}: dataset has no {missing}")
        yield split, name, root


def _numpy_predict(model):
    import torch

    def predict(images):
        maps, scores = model(torch.from_numpy(images))
        return maps.numpy(), scores.numpy()

    return predict


def cmd_train(args: argparse.Namespace) -> int:
    from edge_inspector.train import train_kmdgan

    cfg, model_cfg, threshold_cfg = _settings(args, "kmdgan")
    with _split(args, cfg) as (split, name, _root):
        out = args.out or model_cfg.artefact or Path("models") / f"{cfg.station if cfg else name}.safetensors"
        device = args.device or (cfg.runtime.device if cfg else "cpu")
        model = train_kmdgan(split, model_cfg, out, threshold_cfg.target_false_reject_rate, seed=args.seed,
                             resume=args.resume, progress=not args.quiet, device=device)
    print(f"model artefact: {model.path} (threshold {model.threshold:.4f}, "
          f"{model.meta['training']['seconds']} s of training)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edge_inspector.evaluate import evaluate, evaluate_frames, format_table, frames_of, write_json

    kind = args.model or ("kmdgan" if args.artefact else None)
    if kind is None and args.config:
        from edge_inspector.config import load_config

        kind = load_config(args.config).model.kind
    kind = kind or "memory-bank"
    cfg, model_cfg, threshold_cfg = _settings(args, kind)
    extra = {}
    with _split(args, cfg) as (split, name, root):
        if kind == "memory-bank":
            from edge_inspector.baseline import fit_memory_bank

            model = fit_memory_bank(split, model_cfg, threshold_cfg.target_false_reject_rate, seed=args.seed,
                                    progress=not args.quiet)
            threshold = float(model.threshold)
            extra = {"score_mode": model.score_mode, "score_validation_auroc": model.validation}
        else:
            from edge_inspector.artefact import load_artefact
            from edge_inspector.train import train_kmdgan

            if args.artefact:
                model = load_artefact(args.artefact)
            else:
                out = Path("models") / f"eval-{name}-kmdgan.safetensors"
                model = train_kmdgan(split, model_cfg, out, threshold_cfg.target_false_reject_rate, seed=args.seed,
                                     progress=not args.quiet)
            threshold = model.threshold
            extra = {"artefact": str(model.path), "training": model.meta["training"],
                     "architecture": model.meta["architecture"]}
            model_cfg = model_cfg.model_copy(update={"input_size": model.input_size})
        if threshold_cfg.override is not None:
            threshold = threshold_cfg.override
        inspection = _inspection(args, cfg)
        if inspection is None:
            result = evaluate(_numpy_predict(model), split, model_cfg.input_size, threshold, args.batch_size,
                              progress=not args.quiet)
        else:
            result = evaluate_frames(frames_of(split.test), _numpy_predict(model), model_cfg.input_size,
                                     threshold, inspection, args.eval_size or model_cfg.input_size,
                                     total=len(split.test), progress=not args.quiet)
            result["split"] = split.sizes()
    result.update(model=kind, dataset=name, root=str(root), model_config=model_cfg.model_dump(mode="json"),
                  seed=args.seed, **extra)
    print(format_table(result))
    out = write_json(result, args.out or Path("reports") / f"eval-{name}-{kind}.json")
    print(f"\nJSON report: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-inspector",
        description="Factory-line edge inspection: cameras -> KMDGAN anomaly detection -> verdicts over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"edge-inspector {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _eval_parser(sub)
    _train_parser(sub)
    from edge_inspector.verbs import bench, calibrate, demo, export, run

    export.register(sub)
    bench.register(sub)
    run.register(sub)
    calibrate.register(sub)
    demo.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="edge-inspector: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"edge-inspector: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
