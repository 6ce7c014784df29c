"""The Magnetic Tile layout: `MT_<class>/Imgs/<name>.jpg` with `<name>.png` masks beside them."""

from __future__ import annotations

from pathlib import Path

from edge_inspector.data.folder import list_images, require_dir
from edge_inspector.data.sample import Sample, Split
from edge_inspector.data.split import protocol_split

NORMAL_CLASS = "MT_Free"


def load_magnetic_tile(root: Path, category: str | None = None) -> Split:
    root = require_dir(Path(root), "Magnetic Tile folder")
    require_dir(root / NORMAL_CLASS / "Imgs", "Magnetic Tile normal folder")
    normals, anomalies = [], []
    for folder in sorted(root.glob("MT_*")):
        # the protocol counts *.jpg only; the PNG beside each is its mask
        images = list_images(folder / "Imgs", {".jpg"}) if (folder / "Imgs").is_dir() else []
        if folder.name == NORMAL_CLASS:
            normals = [Sample(p, None, 0, "good") for p in images]
        else:
            kind = folder.name.removeprefix("MT_").lower()
            anomalies += [Sample(p, p.with_suffix(".png"), 1, kind) for p in images]
    return protocol_split(normals, anomalies)
