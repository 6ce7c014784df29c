"""Calibration versions of a station, switched atomically.

calibration/<station>/versions/<id>/ holds one calibration (model artefact, report,
calibration.json); calibration/<station>/current is a symlink to one of them, replaced with
rename(2), so a reader (the service's reload) sees the old or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from edge_inspector.calibration.held_out import gates, rates
from edge_inspector.errors import UserError


def new_version_dir(station_dir: Path) -> Path:
    versions = station_dir / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    base = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, n = versions / base, 1
    while path.exists():
        n += 1
        path = versions / f"{base}-{n}"
    return path


def current(station_dir: Path) -> Path | None:
    link = station_dir / "current"
    return link.resolve() if link.is_symlink() else None


def switch(station_dir: Path, version: Path) -> None:
    link, tmp = station_dir / "current", station_dir / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(Path("versions") / version.name, tmp)
    os.replace(tmp, link)


def rollback(station_dir: Path) -> Path:
    """Switch back to the version before the current one; returns it."""
    versions = sorted(p for p in (station_dir / "versions").glob("*") if (p / "calibration.json").is_file()) \
        if (station_dir / "versions").is_dir() else []
    now = current(station_dir)
    if now is None or now not in versions:
        raise UserError(f"{station_dir}: no current calibration to roll back from")
    index = versions.index(now)
    if index == 0:
        raise UserError(f"{station_dir}: {now.name} is the oldest calibration; nothing to roll back to")
    switch(station_dir, versions[index - 1])
    return versions[index - 1]


def station_folder(cfg) -> Path:
    """Where a station's calibrations live."""
    return cfg.calibration.root / cfg.station


def model_path(cfg) -> Path:
    """The artefact the service runs: the config's, else the station's current calibration."""
    return cfg.model.artefact or station_folder(cfg) / "current" / "model.safetensors"


def retune(station_dir: Path, threshold: float, pixel_threshold: float, who: str, source: str) -> Path:
    """A new version that is the current one with other operating thresholds (from the
    commissioning page), switched to atomically; the previous one stays for rollback."""
    from edge_inspector.model.kmdgan.artefact import retune_artefact

    now = current(station_dir)
    if now is None:
        raise UserError(f"{station_dir}: no current calibration to tune (run edge-inspector calibrate first)")
    record = json.loads((now / "calibration.json").read_text())
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    change = {"by": who, "from": source, "at": when, "from_version": now.name,
              "threshold": [record.get("threshold"), threshold],
              "pixel_threshold": [record.get("pixel_threshold"), pixel_threshold]}
    version = new_version_dir(station_dir)
    work = version.with_name(version.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    retune_artefact(now / "model.safetensors", work / "model.safetensors", threshold, pixel_threshold, change)
    if (now / "report").is_dir():
        shutil.copytree(now / "report", work / "report")
    scores = record.get("held_out_scores") or {}
    normal, defect = scores.get("normal") or [], scores.get("defect") or []
    # regions cut at another pixel threshold say nothing of this one: the rates go by score alone
    gate = gates(record.get("held_out_regions"), pixel_threshold, record.get("min_defect_area", 0))
    expected = rates(normal, defect, threshold, *gate)
    record.update(created=when, threshold=threshold, pixel_threshold=pixel_threshold, retuned=change,
                  expected_false_reject_rate=expected["false_reject_rate"],
                  expected_escape_rate=expected["escape_rate"],
                  held_out_regions=record.get("held_out_regions") if gate[0] is not None else None)
    (work / "calibration.json").write_text(json.dumps(record, indent=2) + "\n")
    work.rename(version)
    switch(station_dir, version)
    return version
