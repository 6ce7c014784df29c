"""The `edge-inspector` command: assembles the verbs (one module each under verbs/)."""

from __future__ import annotations

import argparse
import logging
import sys

from edge_inspector import __version__
from edge_inspector.errors import UserError
from edge_inspector.verbs import bench, calibrate, demo, export, run, train
from edge_inspector.verbs import eval as eval_verb

log = logging.getLogger("edge_inspector")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-inspector",
        description="Factory-line edge inspection: cameras -> KMDGAN anomaly detection -> verdicts over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"edge-inspector {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in (eval_verb, train, export, bench, run, calibrate, demo):
        verb.register(sub)
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
