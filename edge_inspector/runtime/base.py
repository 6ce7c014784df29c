"""The one small interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    """load -> warm up -> infer batches; the memory banks stay on the device until swapped."""

    name = "backend"

    @abstractmethod
    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (B, 3, S, S) float32 RGB in [0, 1] -> (anomaly maps (B, S, S), scores (B,))."""

    @abstractmethod
    def swap_banks(self, banks: list[np.ndarray]) -> None:
        """Put recalibrated memory banks in place; no rebuild, no re-export."""

    def warmup(self, size: int, runs: int = 2) -> None:
        images = np.zeros((1, 3, size, size), np.float32)
        for _ in range(runs):
            self.infer(images)
