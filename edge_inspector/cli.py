"""The `edge-inspector` command: one verb per job on the line PC."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from edge_inspector import __version__
from edge_inspector.errors import NotBuiltError, UserError

log = logging.getLogger("edge_inspector")

# verbs that later work fills in: each says so plainly instead of pretending
PLANNED = {
    "train": "fit a KMDGAN model on a station's normal and few defect samples",
    "export": "export a model artefact to ONNX or a TensorRT engine",
    "bench": "measure latency and throughput of each runtime backend side by side",
    "run": "run the line service: camera -> model -> verdicts over MQTT (systemd unit)",
    "calibrate": "collect normal samples from the station's camera and set the threshold",
    "demo": "the embedded end-to-end demo (synthetic product, calibrate, train, run)",
}


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure a model on a dataset with the benchmark protocol's split and metrics",
        description="Fit the chosen model on the protocol's training part of a dataset, then report "
        "image AUROC, pixel AUROC, pixel AP, AUPRO, F1-max, false rejects and escapes on its test "
        "part as a table and as JSON. Settings come from --config (model, dataset, threshold), "
        "overridden by the options below.",
    )
    p.add_argument("--config", type=Path, help="station YAML; its model, dataset and threshold sections are used")
    p.add_argument("--dataset", choices=["folder", "magnetic-tile", "mvtec", "visa", "synthetic"],
                   help="dataset layout; 'synthetic' makes a small product set itself (no files needed)")
    p.add_argument("--root", type=Path, help="dataset folder (for synthetic: where to write it; default a temp dir)")
    p.add_argument("--category", help="MVTec AD category, VisA object or folder sub-directory")
    p.add_argument("--model", choices=["memory-bank"], default=None, help="model to fit and measure (default memory-bank)")
    p.add_argument("--input-size", type=int, help="model input size in pixels (default 256)")
    p.add_argument("--bank-size", type=int, help="memory bank entries (default 40000)")
    p.add_argument("--sampler", choices=["random", "coreset"], help="memory bank subsampling")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int, default=1, help="test batch size for timing (default 1)")
    p.add_argument("--out", type=Path, help="JSON report path (default reports/eval-<dataset>-<model>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from edge_inspector.baseline import fit_memory_bank
    from edge_inspector.config import DatasetConfig, MemoryBankModelConfig, ThresholdConfig, load_config
    from edge_inspector.data import load_split
    from edge_inspector.evaluate import evaluate, format_table, write_json

    cfg = load_config(args.config) if args.config else None
    model_cfg = cfg.model if cfg else MemoryBankModelConfig(kind="memory-bank")
    updates = {k: v for k, v in {"input_size": args.input_size, "bank_size": args.bank_size,
                                 "sampler": args.sampler}.items() if v is not None}
    model_cfg = MemoryBankModelConfig.model_validate({**model_cfg.model_dump(), **updates})
    threshold_cfg = cfg.threshold if cfg else ThresholdConfig()
    dataset = cfg.dataset if cfg and cfg.dataset else None
    layout = args.dataset or (dataset.layout if dataset else None)
    root = args.root or (dataset.root if dataset else None)
    category = args.category or (dataset.category if dataset else None)
    if layout is None:
        raise UserError("eval needs --dataset (or a dataset section in --config)")
    with tempfile.TemporaryDirectory(prefix="edge-inspector-") as tmp:
        if layout == "synthetic":
            from edge_inspector.data.synthetic_product import write_product_set

            root = write_product_set(root or Path(tmp) / "product", seed=args.seed)
            log.info("synthetic product set written to %s", root)
            layout = "folder"
            name = "synthetic"
        elif root is None:
            raise UserError(f"eval --dataset {layout} needs --root (the dataset folder)")
        else:
            name = layout if not category else f"{layout}/{category}"
        split = load_split(layout, root, category)
        if not split.train_normal or not split.test_normal or not split.test_anomalous:
            raise UserError(f"{root}: dataset has no {'training normals' if not split.train_normal else 'test images of both kinds'}")
        model = fit_memory_bank(split, model_cfg, threshold_cfg.target_false_reject_rate, seed=args.seed,
                                progress=not args.quiet)
        threshold = threshold_cfg.override if threshold_cfg.override is not None else float(model.threshold)

        def predict(images):
            import torch

            maps, scores = model(torch.from_numpy(images))
            return maps.numpy(), scores.numpy()

        result = evaluate(predict, split, model_cfg.input_size, threshold, args.batch_size, progress=not args.quiet)
    result.update(model="memory-bank", dataset=name, root=str(root), model_config=model_cfg.model_dump(mode="json"),
                  seed=args.seed)
    print(format_table(result))
    out = write_json(result, args.out or Path("reports") / f"eval-{name.replace('/', '-')}-memory-bank.json")
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
    for verb, text in PLANNED.items():
        p = sub.add_parser(verb, help=f"{text} (not built yet)", description=f"{text}. Not built yet: "
                           "this verb exits with code 3 until its issue lands.")
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=_not_built)
    return parser


def _not_built(args: argparse.Namespace) -> int:
    raise NotBuiltError(f"'{args.verb}' is not built yet ({PLANNED[args.verb]}); nothing was done")


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
