"""Choosing the operating threshold from training data only (never from the test part)."""

from __future__ import annotations

import numpy as np

HOLDOUT_EVERY = 10  # every 10th training normal is held out of fitting to set the threshold


def split_holdout(samples: list) -> tuple[list, list]:
    """(samples to fit on, held-out samples for the threshold)."""
    return (
        [s for i, s in enumerate(samples) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1],
        [s for i, s in enumerate(samples) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1],
    )


def threshold_from_normals(scores: np.ndarray, target_false_reject_rate: float) -> float:
    """The score above which at most the target share of held-out normals falls (NG is score >= t)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no held-out normal scores to choose a threshold from")
    allowed = int(np.floor(target_false_reject_rate * scores.size))  # normals that may be rejected
    top = scores[scores.size - 1 - allowed]
    return float(np.nextafter(top, np.inf))  # strictly above the highest normal that must pass
