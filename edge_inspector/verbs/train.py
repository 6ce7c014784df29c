"""`edge-inspector train`: train KMDGAN on a dataset or a station's samples; writes one artefact."""

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
        "train",
        help="train KMDGAN on a station's normals and a few real defects; writes one model artefact",
        description="Train the KMDGAN generator (with its discriminator) on the training normals, "
        "synthetic anomalies and at most 10 real anomalies of the protocol split, choose the operating "
        "threshold on held-out training normals, and write one artefact (safetensors) under models/. "
        "With --mode tiles (or a config whose inspection.mode is tiles) it learns from tiles cut as the "
        "line service cuts frames, and sets the threshold on whole held-out frames inspected in tiles. "
        "A checkpoint beside it every 50 iterations lets --resume continue an interrupted run.",
    )
    add_dataset_args(p)
    add_kmdgan_args(p)
    add_inspection_args(p, "train")
    p.add_argument("--bank-size", type=int, help="memory entries per matched scale (default 8192)")
    p.add_argument("--sampler", choices=["random", "coreset"], help="bank subsampling (default coreset)")
    p.add_argument("--out", type=Path, help="artefact path (default models/<station or dataset>.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    p.add_argument("--device", default=None, help="torch device for training, e.g. cuda:0 (default: the config's "
                   "runtime.device, else cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_inspector.inspection.tiled_training import train_station_model

    cfg, model_cfg, threshold_cfg = settings(args, "kmdgan")
    with protocol_split_of(args, cfg) as (split, name, _root):
        out = args.out or model_cfg.artefact or Path("models") / f"{cfg.station if cfg else name}.safetensors"
        device = args.device or (cfg.runtime.device if cfg else "cpu")
        model = train_station_model(split, model_cfg, inspection_of(args, cfg), out,
                                    threshold_cfg.target_false_reject_rate, seed=args.seed, progress=not args.quiet,
                                    device=device, resume=args.resume)
    print(f"model artefact: {model.path} (threshold {model.threshold:.4f}, "
          f"{model.meta['training']['seconds']} s of training)")
    return 0
