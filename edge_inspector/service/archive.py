"""Local archive of NG frames and masks for review and retraining, bounded in count and in bytes
(the oldest go first). File names carry the outbox's epoch and the verdict's seq, the verdict's
unique key, so a new epoch never overwrites an old image. A failed write is logged and counted,
never fatal: the verdict has already gone to the outbox."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


class Archive:
    def __init__(self, root: Path, max_items: int, max_bytes: int = 2 << 30):
        self.root, self.max_items, self.max_bytes = Path(root), max_items, max_bytes
        self.failures, self._last_failure = 0, None
        if max_items:
            self.root.mkdir(parents=True, exist_ok=True)

    def add(self, epoch: str, seq: int, image: np.ndarray, mask: np.ndarray) -> Path | None:
        if not self.max_items:
            return None
        path = self.root / f"{epoch}-{seq:010d}.png"
        try:
            ok = cv2.imwrite(str(path), image) and cv2.imwrite(str(path.with_name(path.stem + "_mask.png")), mask)
            why = None if ok else "the image writer refused (disk full or folder not writable?)"
        except cv2.error as exc:
            why = str(exc).strip().splitlines()[-1]
        if why is not None:
            self.failures += 1
            if why != self._last_failure:
                log.error("archive %s: cannot write %s: %s", self.root, path.name, why)
            self._last_failure = why
            return None
        self._last_failure = None
        self._trim()
        return path

    def _trim(self) -> None:
        images = sorted((p for p in self.root.glob("*.png") if not p.stem.endswith("_mask")),
                        key=lambda p: p.stat().st_mtime_ns)
        pairs = [(p, p.with_name(p.stem + "_mask.png")) for p in images]
        sizes = [sum(f.stat().st_size for f in pair if f.exists()) for pair in pairs]
        total, drop = sum(sizes), max(0, len(pairs) - self.max_items)
        while drop < len(pairs) - 1 and total - sum(sizes[:drop]) > self.max_bytes:
            drop += 1  # the newest pair always stays
        for pair in pairs[:drop]:
            for f in pair:
                f.unlink(missing_ok=True)
