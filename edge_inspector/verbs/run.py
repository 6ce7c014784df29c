"""`edge-inspector run`: the line service (what systemd's edge-inspector@<station>.service starts)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run the line service: camera -> model -> verdicts over MQTT (systemd unit)",
        description="Capture from the station's camera, inspect each frame with the trained model, publish "
        "verdicts and masks over MQTT through a disk-backed outbox. Runs until SIGTERM (then drains, flushes "
        "and publishes offline) or, with --exit-when-done, until a replay folder or video file has ended.")
    p.add_argument("--config", type=Path, required=True, help="station YAML")
    p.add_argument("--print", dest="echo", action="store_true", help="print each verdict as one line")
    p.add_argument("--exit-when-done", action="store_true", help="stop once a finite source has ended")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_inspector.config import load_config
    from edge_inspector.service.pipeline import print_verdict, run_service

    cfg = load_config(args.config)
    return run_service(cfg, print_verdict if args.echo else None, args.exit_when_done)
