"""The pixel threshold the service cuts the anomaly map at, chosen on training data.

The map's scale is set by the model (the learned mask, and the blend's squashed memory distance),
so a fixed 0.5 is not a choice. Candidates are scored on held-out training normals (the share left
without any pixel at or above the level) and on anomalies with known masks: the few-shot ones
(flipped) and synthetic anomalies pasted onto the held-out normals (mean Dice of the cut map), the
two halves weighted equally. The test part is never used.

The cut has two levels (model/mask_cut.cut_mask): a region must reach the pixel threshold
and extends over the connected map at or above the extent level. Normals' cleanliness depends on
the pixel threshold alone, the Dice on both, so the pair is chosen together; an extent equal to
the pixel threshold (a plain cut) is among the candidates and wins ties.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from edge_inspector.config.station import FIXED_CUT
from edge_inspector.data.imageio import from_tensor_layout, to_tensor_layout
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.synthetic_anomaly import add_anomaly, paste_defect
from edge_inspector.model.kmdgan.network import KMDGANGenerator
from edge_inspector.model.mask_cut import components, cut_mask, seeded
from edge_inspector.model.scoring import dice

log = logging.getLogger(__name__)

CANDIDATES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
EXTENTS = (0.1, 0.15, 0.2, 0.25) + CANDIDATES  # extent levels, each tried below every larger threshold
DEFAULT = 0.5  # artefacts written before the choice existed


@torch.no_grad()
def _maps(model: KMDGANGenerator, banks, images: np.ndarray) -> np.ndarray:
    out = []
    for start in range(0, len(images), 8):
        maps, _ = model(torch.from_numpy(images[start : start + 8]), *banks)
        out.append(maps.numpy())
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[2:], np.float32)


def dice_grid(maps, truths, hysteresis: bool = True) -> dict[float, dict[float, float]]:
    """{pixel threshold: {extent: mean Dice of the maps cut at the pair against truths}}; the
    plain cut's extent is the threshold itself."""
    grid = {t: {t: float(np.mean([dice(m >= t, tr) for m, tr in zip(maps, truths)]))} for t in CANDIDATES}
    for e in EXTENTS if hysteresis else ():
        below = [t for t in CANDIDATES if t > e]
        if below:  # each map's parts at or above e labelled once, then cut at every higher threshold
            labels = [components(m, e) for m in maps]
            for t in below:
                grid[t][e] = float(np.mean([dice(seeded(lab, m >= t), tr) for lab, m, tr in zip(labels, maps, truths)]))
    return grid


def best_extent(row: dict[float, float]) -> float:
    """The extent of one threshold's row with the highest Dice; ties: the plain cut, then the higher."""
    return max(row, key=lambda e: (round(row[e], 4), e))


def choose_pixel_threshold(model: KMDGANGenerator, banks, holdout, few_shot, size: int,
                           seed: int = 0, defects: str = "trained", hysteresis: bool = True, rule: str = "best",
                           fixed: tuple[float, float | None] = FIXED_CUT) -> tuple[float, float | None, dict]:
    """(pixel threshold, extent level or None for a plain cut, the validation figures of each
    threshold at its best extent). hysteresis False: plain cuts only. defects: how the few-shot
    defects enter the Dice half (`model.cut_defects`): "trained", the images themselves, flipped
    (which the network was trained on); "pasted", cut out and pasted onto the held-out normals
    (backgrounds it never saw); "synthetic", not at all (the synthetic anomalies alone).
    rule (`model.cut_rule`): "best", the pair with the best objective; "lowest_tie", the lowest
    pair (threshold, then extent) of those within one held-out normal's share of it (0.5 / n):
    the anomalies validated on are ones the network learned, whose maps are sharper than a new
    defect's, so where they cannot tell levels apart the lower one is taken; "lowest_threshold", the
    lowest pixel threshold with any pair in that tie, cut at its own best extent (the lower seed level
    without lowering the extent as well, which over-grew masks on held-out real defects); "fixed", the
    pair fixed gives (extent None: plain), the figures still computed for the record: the trained
    few-shot defects' maps are bolder than a new defect's, so a cut chosen on them rises and the
    masks of new defects shrink, while the map's scale is the same in every model (docs/kmdgan.md)."""
    rng = np.random.default_rng(seed)
    normal_images, anomalies, truths = [], [], []
    held_out_bgr = []
    for batch in iter_batches(holdout, size, 8):
        normal_images.append(batch.images)
        for bgr in from_tensor_layout(batch.images):
            held_out_bgr.append(bgr)
            image, mask = add_anomaly(bgr, rng)
            anomalies.append(to_tensor_layout([image])[0])
            truths.append(mask)
    real = [] if defects == "synthetic" else [
        pair for batch in iter_batches(few_shot, size, 8) for pair in zip(batch.images, batch.masks)]
    if defects == "pasted" and real:
        paste_rng = np.random.default_rng(seed + 1)  # apart: the synthetic anomalies stay as they were
        cut = [(from_tensor_layout(image[None])[0], mask) for image, mask in real]
        for k, bgr in enumerate(held_out_bgr):
            image, mask = paste_defect(bgr, *cut[k % len(cut)], paste_rng)
            anomalies.append(to_tensor_layout([image])[0])
            truths.append(mask)
    else:
        for image, mask in real:
            for flip in (lambda a: a, lambda a: a[..., ::-1]):
                anomalies.append(np.ascontiguousarray(flip(image)))
                truths.append(np.ascontiguousarray(flip(mask)))
    if not normal_images or not anomalies:
        return (*fixed, {}) if rule == "fixed" else (DEFAULT, None, {})
    normal_peaks = _maps(model, banks, np.concatenate(normal_images)).reshape(-1, size * size).max(1)
    anomaly_maps = _maps(model, banks, np.stack(anomalies))
    dices = dice_grid(anomaly_maps, truths, hysteresis)
    figures, clean = {}, {t: float((normal_peaks < t).mean()) for t in CANDIDATES}
    for t in CANDIDATES:
        extent = best_extent(dices[t])
        figures[t] = {"normals_clean": round(clean[t], 4), "anomaly_dice": round(dices[t][extent], 4), "extent": extent,
                      "anomaly_dice_plain": round(dices[t][t], 4),
                      "objective": round(0.5 * clean[t] + 0.5 * dices[t][extent], 4)}
    best = max(CANDIDATES, key=lambda t: (figures[t]["objective"], -abs(t - DEFAULT)))
    extent = figures[best]["extent"]
    if rule in ("lowest_tie", "lowest_threshold"):
        objective = {(t, e): 0.5 * clean[t] + 0.5 * d for t, row in dices.items() for e, d in row.items()}
        floor = max(objective.values()) - 0.5 / len(normal_peaks) - 1e-9  # one normal's share of the objective
        best, extent = min(pair for pair, value in objective.items() if value >= floor)
        if rule == "lowest_threshold":  # its best extent is in the tie too: clean[t] does not depend on it
            extent = figures[best]["extent"]
    if rule == "fixed":
        best, extent = fixed[0], fixed[0] if fixed[1] is None else fixed[1]
    extent = None if extent >= best else extent
    pair_dice = dices.get(best, {}).get(best if extent is None else extent)
    if pair_dice is None:  # a fixed pair off the grid: cut once more, as the service will
        pair_dice = float(np.mean([dice(cut_mask(m, best, extent), tr) for m, tr in zip(anomaly_maps, truths)]))
    log.info("pixel threshold %.2f, extent %s %s (rule %s; held-out normals clean %.3f, Dice on %s anomalies "
             "%.3f at %s)", best, extent, "fixed" if rule == "fixed" else "chosen on training data", rule,
             clean.get(best, float((normal_peaks < best).mean())),
             "synthetic" if defects == "synthetic" else f"few-shot ({defects}) and synthetic",
             pair_dice, "a plain cut" if extent is None else "this extent")
    return best, extent, {str(t): f for t, f in figures.items()}
