"""`edge-inspector demo`, the embedded default main job (no camera, dataset or broker needed):
from nothing to a calibrated inspector and a line run, in a few minutes.

1. make a product image set (a brushed part with a bore; scratches, pits and cracks with masks);
2. calibrate: grab normal parts from a replay camera (a few blurred and over-exposed frames among
   them are rejected with their reason), import 2 labelled defects per kind, train KMDGAN (fast
   profile, shortened to fit the demo's budget), choose the threshold, write the report;
3. run the line service over unseen parts through the replay camera, printing each verdict, and
   publishing over MQTT when a broker is given or answers on 127.0.0.1:1883;
4. draw the NG overlays.
Everything lands in one folder (default demo/), emptied first: the demo is generated content.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
from pathlib import Path

import cv2
import numpy as np
import yaml

from edge_inspector.data.synthetic_product import DEFECT_TYPES, draw_defect, make_part
from edge_inspector.errors import UserError

log = logging.getLogger(__name__)

SIZE = 256  # frame size of the demo's camera
NORMALS, BLURRED, OVEREXPOSED = 60, 3, 2
RUN_NORMAL, RUN_DEFECTS = 12, 4  # per kind
DEMO_MODEL = {"kind": "kmdgan", "input_size": 128, "bank_size": 4000, "profile": "fast", "iterations": 200,
              "batch_size": 8}
# native resolution: 128 px tiles of the 256 px frame, trained, calibrated and inspected alike. On
# the demo's product this took the NG masks from 2 to 2.7 times the drawn defect (whole frames
# resized to 128) to 1.2-1.6 times, for a third of the training time of whole frames at 256 px
# (docs/benchmarks.md, "The demo")
DEMO_INSPECTION = {"mode": "tiles", "tile_size": 128, "overlap": 0.25}


def broker_reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.3).close()
        return True
    except OSError:
        return False


def make_line(root: Path, seed: int = 7) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    calib, defects, run = root / "camera-calibration", root / "defect-samples", root / "camera-line"
    truth = root / "line-truth"  # the masks drawn on the line parts, to measure the service's masks by
    for d in (calib, defects / "masks", run, truth):
        d.mkdir(parents=True, exist_ok=True)
    n = 0
    for i in range(NORMALS + BLURRED + OVEREXPOSED):
        part = make_part(rng, SIZE)
        if i == NORMALS:
            part = cv2.filter2D(part, -1, np.full((15, 1), 1 / 15, np.float32))  # the part moved during exposure
        elif NORMALS < i < NORMALS + BLURRED:
            part = cv2.GaussianBlur(part, (0, 0), 4)  # the lens was bumped
        elif i >= NORMALS + BLURRED:
            part = cv2.convertScaleAbs(part, alpha=2.2, beta=40)  # the lighting flared
        cv2.imwrite(str(calib / f"grab_{n:04d}.png"), part)
        n += 1
    for kind in DEFECT_TYPES:
        for i in range(2):
            image, mask = draw_defect(make_part(rng, SIZE), kind, rng)
            cv2.imwrite(str(defects / f"{kind}_{i}.png"), image)
            cv2.imwrite(str(defects / "masks" / f"{kind}_{i}.png"), mask.astype(np.uint8) * 255)
    order = ["good"] * RUN_NORMAL + [k for k in DEFECT_TYPES for _ in range(RUN_DEFECTS)]
    rng.shuffle(order)
    for i, kind in enumerate(order):
        part = make_part(rng, SIZE)
        if kind != "good":
            part, mask = draw_defect(part, kind, rng)
            cv2.imwrite(str(truth / f"part_{i:03d}_{kind}.png"), mask.astype(np.uint8) * 255)
        cv2.imwrite(str(run / f"part_{i:03d}_{kind}.png"), part)
    return {"calibration": calib, "defects": defects, "line": run, "truth": truth}


def mask_agreement(verdicts: list[dict], archive: Path, truth: Path) -> tuple[float, float] | None:
    """(mean IoU, median predicted / true area) of the NG masks the service archived for the
    defective parts, against the masks the demo drew; None where there is none."""
    from edge_inspector.evaluation.metrics import mask_metrics

    drawn, shipped = [], []
    for v in verdicts:
        t = truth / (v["frame"]["source"] or "")
        p = archive / f"{v['epoch']}-{v['seq']:010d}_mask.png"
        if v["verdict"] == "NG" and t.is_file() and p.is_file():
            drawn.append(cv2.imread(str(t), cv2.IMREAD_GRAYSCALE) > 127)
            shipped.append(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127)
    if not drawn:
        return None
    m = mask_metrics([1] * len(drawn), drawn, shipped, pixel_threshold=0.5)  # the masks are already cut
    return m["mask_iou"], m["area_ratio_median"]


def station_yaml(root: Path, camera: Path, mqtt: tuple[str, int] | None) -> Path:
    cfg = {"station": "demo", "model": dict(DEMO_MODEL),
           "threshold": {"target_false_reject_rate": 0.05, "min_defect_area": 4},
           "inspection": dict(DEMO_INSPECTION),
           "camera": {"type": "folder", "path": str(camera), "fps": 50},
           "runtime": {"backend": "torch"},
           "calibration": {"root": str(root / "calibration")},
           "service": {"state_dir": str(root / "state"), "queue_size": 100, "archive_max_items": 100}}
    if mqtt:
        cfg["mqtt"] = {"host": mqtt[0], "port": mqtt[1], "protocol": "5", "publish_mask": "ng",
                       "client_id": "edge-inspector-demo", "sparkplug": {"group_id": "demo-line"}}
    path = root / "station.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_demo(root: Path, mqtt: tuple[str, int] | None | bool = None, progress: bool = True) -> dict:
    from edge_inspector.calibration.report import overlay
    from edge_inspector.calibration.run import calibrate
    from edge_inspector.config import load_config
    from edge_inspector.service.pipeline import LineService, print_verdict

    root = Path(root).resolve()  # the station file it writes names absolute paths
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if mqtt is None:  # not said: publish where a broker answers on the usual port
        mqtt = ("127.0.0.1", 1883) if broker_reachable("127.0.0.1", 1883) else False
    folders = make_line(root)
    print(f"[1/4] product images made under {root}")
    cfg = load_config(station_yaml(root, folders["calibration"], mqtt or None))
    print(f"[2/4] calibrating station demo: grabbing {NORMALS + BLURRED + OVEREXPOSED} frames, "
          f"training KMDGAN ({DEMO_MODEL['iterations']} iterations on {DEMO_INSPECTION['tile_size']} px tiles "
          "at native resolution)")
    version = calibrate(cfg, NORMALS + BLURRED + OVEREXPOSED, folders["defects"], progress=progress)
    report = version / "report" / "index.html"
    print(f"      report: {report}")
    print(f"[3/4] line run over {len(list(folders['line'].iterdir()))} parts"
          + (f", publishing to {mqtt[0]}:{mqtt[1]} under edge-inspector/demo/ and as Sparkplug B edge node "
             "spBv1.0/demo-line/+/demo" if mqtt else " (no broker)"))
    run_cfg = cfg.model_copy(update={"camera": cfg.camera.model_copy(update={"path": folders["line"]})})
    verdicts = []

    def echo(message):
        verdicts.append(message)
        print_verdict(message)

    LineService(run_cfg, echo=echo, exit_when_done=True).run(install_signals=False)
    overlays = root / "overlays"
    overlays.mkdir()
    for image_path in sorted((root / "state" / "archive").glob("*.png")):
        if image_path.stem.endswith("_mask"):
            continue
        mask = cv2.imread(str(image_path.with_name(image_path.stem + "_mask.png")), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(overlays / image_path.name), overlay(cv2.imread(str(image_path)), mask > 127))
    truth = [("good" not in (v["frame"]["source"] or "")) for v in verdicts]
    said = [v["verdict"] == "NG" for v in verdicts]
    hits = sum(t and s for t, s in zip(truth, said))
    false_rejects = sum(s and not t for t, s in zip(truth, said))
    # good parts that only the region rule (threshold.min_defect_area) kept OK: said, not hidden
    gated = sum(not t and not s and v["score"] is not None and v["score"] >= v["threshold"]
                for t, s, v in zip(truth, said, verdicts))
    agreement = mask_agreement(verdicts, root / "state" / "archive", folders["truth"])
    masks = "" if agreement is None else \
        f"; NG masks against the drawn defects: mean IoU {agreement[0]:.2f}, median area ratio {agreement[1]:.2f}"
    print(f"[4/4] {len(verdicts)} verdicts: {hits} of {sum(truth)} defective parts found, {false_rejects} of "
          f"{len(truth) - sum(truth)} good parts rejected"
          + (f" ({gated} scored above the threshold, kept OK by having no defect region)" if gated else "")
          + f"{masks}; NG overlays under {overlays}")
    return {"report": report, "overlays": overlays, "verdicts": verdicts, "version": version,
            "mask_iou": agreement and agreement[0], "area_ratio": agreement and agreement[1], "region_gated": gated}


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
