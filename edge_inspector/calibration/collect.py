"""Collect normal samples from the station's camera, screened frame by frame, with a manifest;
import labelled defect samples (image + mask)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
from tqdm import tqdm

from edge_inspector.calibration.quality import screen
from edge_inspector.cameras import open_camera
from edge_inspector.data.folder import MASK_FOLDERS, find_mask, list_images, mask_candidates
from edge_inspector.errors import UserError

log = logging.getLogger(__name__)

GRAB_TIMEOUT_S = 30.0  # no frame for this long: the camera is not delivering


def grab(camera_cfg, count: int, progress: bool = True) -> list:
    """count frames from the camera (software-triggered where it is set so)."""
    camera = open_camera(camera_cfg)
    frames, last = [], time.monotonic()
    bar = tqdm(total=count, desc="grabbing normal samples", disable=not progress)
    try:
        while len(frames) < count:
            if camera.triggered and camera.ensure_open():
                camera.trigger(f"calibration-{len(frames)}")
            frame = camera.grab(1.0)
            if frame is not None and frame.image is not None:
                frames.append(frame)
                bar.update(1)
                last = time.monotonic()
            elif camera.exhausted:
                break
            elif time.monotonic() - last > GRAB_TIMEOUT_S:
                raise UserError(f"camera {camera.name}: no frame for {GRAB_TIMEOUT_S:.0f} s "
                                f"({camera.health()['last_error'] or 'no error reported'})")
    finally:
        bar.close()
        camera.close()
    if len(frames) < count:
        log.warning("camera %s delivered %d of %d frames", camera.name, len(frames), count)
    return frames


def store_normals(frames: list, folder: Path, camera_cfg) -> dict:
    """Screen the frames, write the kept ones, and append both to the folder's manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    reasons = screen([f.image for f in frames])
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"samples": [], "rejected": []}
    settings = camera_cfg.model_dump(mode="json")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    kept = 0
    for i, (frame, reason) in enumerate(zip(frames, reasons)):
        when = datetime.fromtimestamp(frame.captured_at, timezone.utc).isoformat(timespec="milliseconds")
        if reason is not None:
            manifest["rejected"].append({"time": when, "source": frame.source, "reason": reason})
            continue
        ok, data = cv2.imencode(".png", frame.image)
        if not ok:
            raise UserError(f"cannot encode frame {i} as PNG")
        digest = hashlib.sha256(data.tobytes()).hexdigest()
        name = f"{stamp}_{i:04d}.png"
        (folder / name).write_bytes(data.tobytes())
        manifest["samples"].append({"file": name, "time": when, "sha256": digest, "source": frame.source,
                                    "camera": settings})
        kept += 1
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(manifest_path)
    return {"kept": kept, "rejected": [(f.source or i, r) for i, (f, r) in enumerate(zip(frames, reasons)) if r]}


def import_defects(source: Path, folder: Path) -> int:
    """Copy labelled defect samples with their masks, found by the folder layout's rule
    (data/folder.py: `<name>_mask.png` beside it, `<name>.png` beside a non-PNG image, or in
    `masks/` / `ground_truth/`)."""
    if not source.is_dir():
        raise UserError(f"defect folder not found: {source}")
    folder.mkdir(parents=True, exist_ok=True)
    mirrors = [source / m for m in MASK_FOLDERS]
    count = 0
    for image in list_images(source):
        mask = find_mask(image, mirrors)
        if mask is None:
            tried = ", ".join(str(c.relative_to(source)) for c in mask_candidates(image, mirrors)[:3])
            raise UserError(f"{image}: no mask found (looked for {tried}, ...; see docs/datasets.md)")
        shutil.copy(image, folder / f"{image.stem}.png" if image.suffix == ".png" else folder / image.name)
        shutil.copy(mask, folder / f"{image.stem}_mask.png")
        count += 1
    if not count:
        raise UserError(f"{source}: no defect images found")
    return count
