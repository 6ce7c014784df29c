"""Bounded frame queue between capture and inference.

Free-run frames: beyond the bound the oldest free-run frame is dropped (and counted): the line
wants the newest image. Triggered frames are never dropped: each is a part that must get exactly
one verdict, however late.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from edge_inspector.cameras.base import Frame


class FrameQueue:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.items: deque[tuple[float, Frame]] = deque()
        self.cond = threading.Condition()
        self.dropped = 0

    def put(self, frame: Frame) -> bool:
        """Enqueue; False when a free-run frame had to be dropped to make room."""
        with self.cond:
            dropped = False
            if not frame.triggered and sum(not f.triggered for _, f in self.items) >= self.maxsize:
                for i, (_, old) in enumerate(self.items):
                    if not old.triggered:
                        del self.items[i]
                        self.dropped += 1
                        dropped = True
                        break
            self.items.append((time.monotonic(), frame))
            self.cond.notify()
            return not dropped

    def get(self, timeout: float) -> tuple[float, Frame] | None:
        """(monotonic time it was queued, frame) or None after timeout."""
        with self.cond:
            if not self.items:
                self.cond.wait(timeout)
            return self.items.popleft() if self.items else None

    def __len__(self) -> int:
        with self.cond:
            return len(self.items)
