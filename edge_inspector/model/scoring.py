"""Image scores: aggregation of patch distances, the ranking behind AUROC, the choice of an
aggregation on training data, and the operating threshold from training data only (never from
the test part)."""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

SCORE_MODES = ("max", "top10", "mean")
HOLDOUT_EVERY = 10  # every 10th training normal is held out of fitting to set the threshold
CHECK_OFFSET = 4  # split_check_normals: positions 4, 14, 24..., none of them split_holdout's


def aggregate(patch: torch.Tensor, mode: str) -> torch.Tensor:
    """Image score from patch distances (B, h*w)."""
    if mode == "max":
        return patch.amax(1)
    if mode == "top10":
        return patch.topk(min(10, patch.shape[1]), dim=1).values.mean(1)
    if mode == "mean":
        return patch.mean(1)
    raise ValueError(f"unknown score mode {mode!r}; expected one of {SCORE_MODES}")


def ranked_sums(scores: np.ndarray, *weights: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Cumulative sums of each weight array at each distinct score, scores taken from high to low.

    Returns (those sums, the cumulative count of items, the thresholds); one sort for all.
    """
    order = np.argsort(scores, kind="stable")[::-1]
    s = scores[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    sums = [np.cumsum(w[order], dtype=np.float64)[last_of_group] for w in weights]
    return sums, last_of_group + 1.0, s[last_of_group]


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold (high to low), and the thresholds."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores).ravel()
    (tps,), counts, thresholds = ranked_sums(scores, labels)
    return tps, counts - tps, thresholds


def class_counts(labels: np.ndarray) -> tuple[int, int]:
    positives = int(np.count_nonzero(labels))
    negatives = int(np.asarray(labels).size - positives)
    if positives == 0 or negatives == 0:
        raise ValueError("metric needs both normal and anomalous samples")
    return positives, negatives


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    p, n = class_counts(labels)
    tps, fps, _ = roc_points(labels, scores)
    return float(np.trapezoid(np.r_[0.0, tps / p], np.r_[0.0, fps / n]))


def split_holdout(samples: list) -> tuple[list, list]:
    """(samples to fit on, held-out samples for the threshold)."""
    return (
        [s for i, s in enumerate(samples) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1],
        [s for i, s in enumerate(samples) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1],
    )


def split_check_normals(samples: list) -> tuple[list, list]:
    """(samples to train on, samples kept out of training altogether): every 10th, none of which
    split_holdout would have held out of the whole list. Validation counts false rejects on them
    (tools/validate_defects.py --check-normals): the held-out normals cannot show those, because
    the operating threshold is set on them."""
    return ([s for i, s in enumerate(samples) if i % HOLDOUT_EVERY != CHECK_OFFSET],
            [s for i, s in enumerate(samples) if i % HOLDOUT_EVERY == CHECK_OFFSET])


def threshold_from_normals(scores: np.ndarray, target_false_reject_rate: float) -> float:
    """The score above which at most the target share of held-out normals falls (NG is score >= t)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no held-out normal scores to choose a threshold from")
    allowed = int(np.floor(target_false_reject_rate * scores.size))  # normals that may be rejected
    top = scores[scores.size - 1 - allowed]
    return float(np.nextafter(top, np.inf))  # strictly above the highest normal that must pass


def choose_score_mode(normal: torch.Tensor, anomalous: torch.Tensor | None) -> tuple[str, dict[str, float]]:
    """The aggregation that best separates held-out training normals from the few-shot anomalies.

    Both come from the training part: the bank holds neither, so this is a fair validation.
    Without anomalies the maximum is kept (PatchCore's choice).
    """
    if anomalous is None or len(normal) == 0 or len(anomalous) == 0:
        return "max", {}
    labels = [0] * len(normal) + [1] * len(anomalous)
    aucs = {m: round(roc_auc(labels, torch.cat([aggregate(normal, m), aggregate(anomalous, m)]).numpy()), 4)
            for m in SCORE_MODES}
    return max(SCORE_MODES, key=lambda m: aucs[m]), aucs  # ties: the first in SCORE_MODES


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty."""
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(pred, truth).sum() / total)


def rate_upper_bound(hits: int, n: int, z: float = 1.96) -> float:
    """Upper end of the Wilson score interval (95 % by default) of a rate seen as hits in n: what a
    rate measured on few images may really be (0 of 76 held-out normals rejected: up to 4.8 %)."""
    if n == 0:
        return 1.0
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(min(1.0, (centre + spread) / (1 + z * z / n)))


def held_out_rejections(scores, threshold: float) -> tuple[int, float]:
    """(how many held-out normal scores reach the threshold, the false-reject rate's 95 % upper
    bound). Compared in float64, as the service compares: in float32 the threshold (the next
    float64 above the largest score) would round back onto that score and count it."""
    rejected = int(np.count_nonzero(np.asarray(scores, dtype=np.float64) >= threshold))
    return rejected, rate_upper_bound(rejected, int(np.size(scores)))


TAIL_QUANTILE = 0.95  # item scores above this quantile of the held-out ones make the fitted tail
# images are far fewer than tiles (56 to 76 held-out normals): the tail is their top 15 %, or their
# top 11 where that is more, fitted from 44 held-out normals up (the top quarter)
IMAGE_TAIL_QUANTILE, IMAGE_TAIL_MIN, IMAGE_TAIL_MIN_NORMALS = 0.85, 11, 44
THRESHOLD_RULES = ("empirical", "tail")


def max_threshold_from_tail(item_scores: np.ndarray, items_per_whole: float, target_false_reject_rate: float,
                            maxima: np.ndarray | None = None,
                            quantile: float = TAIL_QUANTILE) -> tuple[float, float]:
    """The threshold on the maximum of a whole's item scores (a frame's tiles) that a normal whole
    passes with probability 1 - target, from held-out items: an exponential tail fitted to the item
    scores above their TAIL_QUANTILE (peaks over threshold). A few held-out frames give a few maxima
    but hundreds of tile scores: the tail of those says where the 99th percentile of a frame's
    maximum lies, which the largest of 5 maxima cannot.

    Tiles of one frame are not independent (they overlap, share light and part). maxima, the
    held-out wholes' own maxima, set how many independent items a whole is worth: under the tail,
    the chance of an item above a whole's maximum m is p(m), and -log(1 - p(m)) over the wholes
    is exponential with rate n (the maximum-likelihood n is their count over their sum), kept
    within 1 and items_per_whole. Returns (threshold, the n used)."""
    scores = np.asarray(item_scores, dtype=np.float64)
    u = float(np.quantile(scores, quantile))
    excess = scores[scores > u] - u
    if excess.size < 10:
        raise ValueError(f"{excess.size} item scores above the {quantile:.0%} quantile: too few to fit a tail")
    share, beta = excess.size / scores.size, float(excess.mean())

    def above(x: np.ndarray) -> np.ndarray:  # the fitted chance of one item at or above x
        return np.minimum(1.0, share * np.exp(-(np.asarray(x, np.float64) - u) / beta))

    n = float(items_per_whole)
    if maxima is not None and len(maxima):
        hazard = -np.log1p(-np.minimum(above(maxima), 1 - 1e-12))
        n = float(np.clip(len(maxima) / max(float(hazard.sum()), 1e-12), 1.0, items_per_whole))
    per_item = 1.0 - (1.0 - target_false_reject_rate) ** (1.0 / n)  # P(one item above t)
    return u + beta * float(np.log(share / per_item)), n


def threshold_by_rule(scores: np.ndarray, target_false_reject_rate: float, rule: str) -> tuple[float, str]:
    """(the operating threshold on held-out normal image scores, the rule that set it).

    "empirical": the held-out order statistic (threshold_from_normals); with a 1 % target and fewer
    than 100 held-out normals, their largest score, so one odd normal sets it. "tail": the
    (1 - target) quantile of an exponential tail fitted to their top 15 % (at least their top 11),
    which weighs the tail's shape rather than its one largest point; under 44 scores fall back to
    "empirical", and the rule returned says so."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule {rule!r} unknown (one of {THRESHOLD_RULES})")
    n = int(np.size(scores))
    if rule == "tail":
        if n >= IMAGE_TAIL_MIN_NORMALS:
            quantile = min(IMAGE_TAIL_QUANTILE, 1 - IMAGE_TAIL_MIN / n)
            return max_threshold_from_tail(scores, 1.0, target_false_reject_rate, quantile=quantile)[0], "tail"
        log.warning("threshold rule tail: %d held-out normals are too few to fit a tail (%d needed); the "
                    "held-out order statistic sets the threshold instead", n, IMAGE_TAIL_MIN_NORMALS)
    return threshold_from_normals(scores, target_false_reject_rate), "empirical"
