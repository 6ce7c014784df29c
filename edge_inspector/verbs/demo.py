"""`edge-inspector demo`: the embedded default main job (no camera, dataset or broker needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_inspector.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the embedded end-to-end demo (synthetic product, calibrate, train, run)",
        description="Make a small product image set, calibrate a station on it from a replay camera, train "
        "KMDGAN, run the line service over unseen parts printing each verdict, and write the calibration "
        "report and the NG overlays. Publishes over MQTT when a broker is given or answers on "
        "127.0.0.1:1883. The output folder is emptied first.")
    p.add_argument("--out", type=Path, default=Path("demo"), help="output folder (default demo/)")
    p.add_argument("--mqtt", metavar="HOST:PORT", help="broker to publish to (default: 127.0.0.1:1883 if it answers)")
    p.add_argument("--no-mqtt", action="store_true", help="do not publish even if a broker answers")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_inspector.demo import run_demo

    mqtt = None
    if args.no_mqtt:
        mqtt = False
    elif args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f"--mqtt {args.mqtt}: expected HOST:PORT")
        mqtt = (host, int(port))
    run_demo(args.out, mqtt, progress=not args.quiet)
    return 0
