"""Local archive of NG frames and masks for review and retraining, bounded in count (oldest go)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


class Archive:
    def __init__(self, root: Path, max_items: int):
        self.root, self.max_items = Path(root), max_items
        if max_items:
            self.root.mkdir(parents=True, exist_ok=True)

    def add(self, seq: int, image: np.ndarray, mask: np.ndarray) -> Path | None:
        if not self.max_items:
            return None
        path = self.root / f"{seq:010d}.png"
        try:
            cv2.imwrite(str(path), image)
            cv2.imwrite(str(self.root / f"{seq:010d}_mask.png"), mask)
        except cv2.error as exc:
            log.error("archive %s: cannot write: %s", self.root, exc)
            return None
        self._trim()
        return path

    def _trim(self) -> None:
        images = sorted(p for p in self.root.glob("*.png") if not p.stem.endswith("_mask"))
        for old in images[: max(0, len(images) - self.max_items)]:
            old.unlink(missing_ok=True)
            old.with_name(old.stem + "_mask.png").unlink(missing_ok=True)
