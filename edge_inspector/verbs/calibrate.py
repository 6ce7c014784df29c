"""`edge-inspector calibrate`: from an empty station to a tuned inspector, or back one calibration."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="collect normal samples from the station's camera, train, set the threshold, report",
        description="Grab N normal samples from the station's camera (each screened for focus, exposure, motion "
        "blur and near-duplicates; rejected ones are listed with the reason), optionally import labelled defect "
        "samples, train the configured model on everything collected so far, choose the threshold from "
        "held-out normals, write an HTML report, and switch the new calibration in atomically. The previous "
        "one stays for --rollback. A running service picks the new one up on its reload command.")
    p.add_argument("--config", type=Path, required=True, help="station YAML")
    p.add_argument("--count", type=int, help="normal samples to grab (default: calibration.count)")
    p.add_argument("--defects", type=Path, help="folder of defect images with masks (masks/<name>.png or <name>_mask.png)")
    p.add_argument("--no-grab", action="store_true", help="grab nothing; recalibrate from the samples already kept")
    p.add_argument("--rollback", action="store_true", help="switch back to the previous calibration and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_inspector.calibration import store
    from edge_inspector.calibration.run import calibrate
    from edge_inspector.config import load_config

    cfg = load_config(args.config)
    if args.rollback:
        version = store.rollback(store.station_folder(cfg))
        print(f"calibration {version.name} is current again")
        return 0
    version = calibrate(cfg, args.count, args.defects, progress=not args.quiet, grab_frames=not args.no_grab)
    print(f"calibration {version.name} is current: {version / 'calibration.json'}")
    print(f"report: {version / 'report' / 'index.html'}")
    return 0
