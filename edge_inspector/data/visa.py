"""The VisA layout, split by its own `split_csv/1cls.csv` (object, split, label, image, mask)."""

from __future__ import annotations

import csv
from pathlib import Path

from edge_inspector.data.folder import require_dir
from edge_inspector.data.sample import Sample, Split
from edge_inspector.data.split import split_with_test_set
from edge_inspector.errors import UserError

SPLIT_CSV = Path("split_csv") / "1cls.csv"
COLUMNS = {"object", "split", "label", "image", "mask"}


def load_visa(root: Path, category: str | None = None) -> Split:
    root = require_dir(Path(root), "VisA folder")
    table = root / SPLIT_CSV
    if not table.is_file():
        raise UserError(f"VisA split file not found: {table}")
    if not category:
        raise UserError("VisA needs --category (an object name of split_csv/1cls.csv, e.g. pcb1)")
    with table.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = COLUMNS - set(reader.fieldnames or [])
        if missing:
            raise UserError(f"{table}: missing columns {sorted(missing)}")
        rows = [r for r in reader if r["object"] == category]
    if not rows:
        raise UserError(f"{table}: no rows for object {category!r}")
    train, test = [], []
    for r in rows:
        anomalous = r["label"].strip().lower() == "anomaly"
        mask = root / r["mask"] if anomalous and r["mask"].strip() else None
        sample = Sample(root / r["image"], mask, int(anomalous), "anomaly" if anomalous else "good")
        if r["split"].strip().lower() == "train":
            if not anomalous:  # VisA's train part holds normals only; anything else is left out
                train.append(sample)
        else:
            test.append(sample)
    return split_with_test_set(train, test)
