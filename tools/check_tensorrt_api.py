#!/usr/bin/env python3
"""Check the TensorRT API edge-inspector uses against installed `tensorrt` bindings wheels.

Where `import tensorrt` works, every used attribute is looked up; otherwise (the PyPI bindings
wheel needs NVIDIA's libnvinfer to import) the names the bindings' shared object declares are
checked. Prints a table per bindings build and exits 1 where something used is missing.

    python tools/check_tensorrt_api.py /tmp/trt10/lib/python3.11/site-packages/tensorrt_bindings/tensorrt.so ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_inspector.runtime.tensorrt_api import USED, check  # noqa: E402


def version_of(so: Path) -> str:
    dist = next(so.parent.parent.glob("tensorrt_*bindings-*.dist-info"), None)
    return dist.name.removesuffix(".dist-info").split("-")[-1] if dist else "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bindings", type=Path, nargs="+", help="tensorrt_bindings/tensorrt.so of each wheel")
    args = p.parse_args()
    results = {version_of(so): check(so) for so in args.bindings}
    print(f"| bindings | used names ({len(USED)}) missing | removed-in-11 names still declared |\n|---|---|---|")
    for version, r in results.items():
        print(f"| {version} | {', '.join(r['missing']) or 'none'} | {', '.join(r['still_declared_removed']) or 'none'} |")
    print(json.dumps(results))
    return 1 if any(r["missing"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
