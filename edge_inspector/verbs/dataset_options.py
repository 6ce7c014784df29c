"""What eval and train share: the dataset and KMDGAN options, the settings they resolve to, and
the protocol split of the chosen dataset."""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
from pathlib import Path

from edge_inspector.errors import UserError

log = logging.getLogger("edge_inspector")

LAYOUT_CHOICES = ["folder", "magnetic-tile", "mvtec", "visa", "synthetic"]


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="station YAML; its model, dataset and threshold sections are used")
    p.add_argument("--dataset", choices=LAYOUT_CHOICES,
                   help="dataset layout; 'synthetic' makes a small product set itself (no files needed)")
    p.add_argument("--root", type=Path, help="dataset folder (for synthetic: where to write it; default a temp dir)")
    p.add_argument("--category", help="MVTec AD category, VisA object or folder sub-directory")
    p.add_argument("--input-size", type=int, help="model input size in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_kmdgan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=["fast", "full"], help="KMDGAN training profile (fast: 2-core CPU; full: GPU)")
    p.add_argument("--iterations", type=int, help="KMDGAN training iterations (default: the profile's)")
    p.add_argument("--without", action="append", default=[], metavar="PART",
                   choices=["memory_matching", "cross_scale_fusion", "map_modulation", "edge_context", "adversarial"],
                   help="switch a KMDGAN part off (repeatable), for ablations")


def settings(args: argparse.Namespace, kind: str):
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
def protocol_split_of(args: argparse.Namespace, cfg):
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


def add_inspection_args(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("--mode", choices=["resize", "tiles"], help=f"{verb} as the line service inspects: whole images "
                   "resized to the model input, or cut into tiles at their own resolution (default: the config's "
                   "inspection section where --mode or a config is given, else the protocol's plain resize)")
    p.add_argument("--tile-size", type=int, help="tile side in image pixels (tiles mode; default: model input)")
    p.add_argument("--overlap", type=float, help="share of a tile overlapping its neighbour (tiles mode)")


def inspection_of(args: argparse.Namespace, cfg):
    """The inspection settings from --mode / --tile-size / --overlap over the config's section, or
    None where neither a flag nor the config's inspection section says anything."""
    from edge_inspector.config import InspectionConfig

    explicit = args.mode or args.tile_size or args.overlap is not None
    if not explicit and not (cfg and "inspection" in cfg.model_fields_set):
        return None
    base = cfg.inspection.model_dump() if cfg else {}
    updates = {"mode": args.mode, "tile_size": args.tile_size, "overlap": args.overlap}
    return InspectionConfig.model_validate({**base, **{k: v for k, v in updates.items() if v is not None}})
