"""Dataset layouts, each yielding the benchmark protocol's split of labelled samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge_inspector.data.folder import load_folder
from edge_inspector.data.magnetic_tile import load_magnetic_tile
from edge_inspector.data.mvtec import load_mvtec
from edge_inspector.data.sample import Sample, Split
from edge_inspector.data.visa import load_visa
from edge_inspector.errors import UserError

LAYOUTS: dict[str, Callable[[Path, str | None], Split]] = {
    "folder": load_folder,
    "magnetic-tile": load_magnetic_tile,
    "mvtec": load_mvtec,
    "visa": load_visa,
}


def load_split(layout: str, root: Path, category: str | None = None) -> Split:
    if layout not in LAYOUTS:
        raise UserError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return LAYOUTS[layout](Path(root), category)


__all__ = ["LAYOUTS", "Sample", "Split", "load_split"]
