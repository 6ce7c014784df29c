"""The folder layout: `good/` plus one folder per defect type.

Masks stand beside their image (`<stem>_mask.png`, or `<stem>.png` beside a non-PNG image)
or in a mirror folder (`masks/`, `ground_truth/`, or their `<type>/` sub-folder, named
`<stem>.png` or `<stem>_mask.png`). An anomalous image without a mask is kept (image metrics
still count it). `calibrate --defects` finds masks by the same rule (find_mask).
"""

from __future__ import annotations

from pathlib import Path

from edge_inspector.data.sample import Sample, Split
from edge_inspector.data.split import protocol_split
from edge_inspector.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MASK_FOLDERS = ("masks", "ground_truth")
NORMAL_FOLDER = "good"


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{what} not found: {path}")
    return path


def list_images(folder: Path, suffixes: set[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files in a folder, leaving out mask files that stand beside them."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
    stems_of_others = {p.stem for p in files if p.suffix.lower() != ".png"}
    return sorted(
        p
        for p in files
        if not p.stem.endswith("_mask") and not (p.suffix.lower() == ".png" and p.stem in stems_of_others)
    )


def mask_candidates(image: Path, mirror_roots: list[Path]) -> list[Path]:
    """Where the mask of image may stand, in the order looked at (the module's rule)."""
    candidates = [image.with_name(image.stem + "_mask.png")]
    if image.suffix.lower() != ".png":
        candidates.append(image.with_suffix(".png"))
    for root in mirror_roots:
        for folder in (root / image.parent.name, root):
            candidates += [folder / (image.stem + ".png"), folder / (image.stem + "_mask.png")]
    return candidates


def find_mask(image: Path, mirror_roots: list[Path]) -> Path | None:
    return next((c for c in mask_candidates(image, mirror_roots) if c.is_file()), None)


def load_folder(root: Path, category: str | None = None) -> Split:
    root = require_dir(Path(root) / (category or ""), "dataset folder")
    good = require_dir(root / NORMAL_FOLDER, "folder of normal images")
    mirrors = [root / m for m in MASK_FOLDERS if (root / m).is_dir()]
    normals = [Sample(p, None, 0, "good") for p in list_images(good)]
    anomalies = [
        Sample(p, find_mask(p, mirrors), 1, folder.name)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and folder.name not in (NORMAL_FOLDER, *MASK_FOLDERS) and not folder.name.startswith(".")
        for p in list_images(folder)
    ]
    return protocol_split(normals, anomalies)
