"""The MVTec AD layout of one category: train/good, test/<type>, ground_truth/<type>/<stem>_mask.png."""

from __future__ import annotations

from pathlib import Path

from edge_inspector.data.folder import list_images, require_dir
from edge_inspector.data.sample import Sample, Split
from edge_inspector.data.split import split_with_test_set


def load_mvtec(root: Path, category: str | None = None) -> Split:
    root = require_dir(Path(root) / (category or ""), "MVTec AD category folder")
    train = [Sample(p, None, 0, "good") for p in list_images(require_dir(root / "train" / "good", "MVTec AD train/good"))]
    test = []
    for folder in sorted(require_dir(root / "test", "MVTec AD test folder").iterdir()):
        if not folder.is_dir():
            continue
        for p in list_images(folder):
            if folder.name == "good":
                test.append(Sample(p, None, 0, "good"))
            else:
                mask = root / "ground_truth" / folder.name / f"{p.stem}_mask.png"
                test.append(Sample(p, mask if mask.is_file() else None, 1, folder.name))
    return split_with_test_set(train, test)
