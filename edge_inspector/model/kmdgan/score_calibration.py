"""After training: choose the memory-distance part of the image score, set the map blend's levels
and standardise the score parts on held-out training normals, then choose the threshold on them."""

from __future__ import annotations

import logging

import numpy as np
import torch

from edge_inspector.data.imageio import from_tensor_layout, to_tensor_layout
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.synthetic_anomaly import KINDS, make_anomaly
from edge_inspector.errors import UserError
from edge_inspector.model.kmdgan.network import KMDGANGenerator
from edge_inspector.model.memory_bank.search import owners_left_out
from edge_inspector.model.scoring import choose_score_mode, held_out_rejections, threshold_by_rule

log = logging.getLogger(__name__)


def outputs(model: KMDGANGenerator, banks, samples, size: int, leave_out=None
            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mask probabilities (N, 1, H, W) and, per matched stride, distance maps (N, 1, h, w).
    leave_out: (each bank row's owner per matched stride, {sample: [owners]}): each sample matched
    without those owners' bank rows (Prepared.leave_out)."""
    batches = iter_batches(samples, size, 8)
    if leave_out is None:
        return outputs_of(model, banks, (batch.images for batch in batches))
    owners, nearest = leave_out
    return outputs_of(model, banks, ((batch.images, (owners, owners_left_out(nearest, batch.samples)))
                                     for batch in batches))


def image_scores(model: KMDGANGenerator, prob: torch.Tensor, dists: list[torch.Tensor], chunk: int = 64) -> np.ndarray:
    """The image score of outputs()' results, as the service computes it."""
    return np.concatenate([model.map_and_score(prob[i:i + chunk], [d[i:i + chunk] for d in dists])[1].numpy()
                           for i in range(0, len(prob), chunk)]) if len(prob) else np.zeros(0)


@torch.no_grad()
def outputs_of(model: KMDGANGenerator, banks, batches) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """outputs() over batches of model-input arrays (B, 3, H, W), or (array, match's exclude) pairs."""
    probs, dists = [], []
    for item in batches:
        images, exclude = item if isinstance(item, tuple) else (item, None)
        image = torch.from_numpy(images)
        feats = model.features(image)
        logits, distances = model.decode(image, feats, model.match(feats, banks, exclude))
        probs.append(torch.sigmoid(logits))
        dists.append(distances)
    if not probs:
        return torch.zeros(0), []
    return torch.cat(probs), [torch.cat(per) for per in zip(*dists)]


MAP_NORMAL_QUANTILE = 0.999  # a held-out normal pixel reaches the blend's 0.5 once in a thousand


def set_map_levels(model: KMDGANGenerator, dists: list[torch.Tensor], size: int) -> None:
    """The map blend's centre and spread per stride, from held-out normals' upsampled distances."""
    for i, d in enumerate(dists):
        up = torch.nn.functional.interpolate(d, size=(size, size), mode="bilinear", align_corners=False).flatten()
        sample = up[torch.randperm(up.numel(), generator=torch.Generator().manual_seed(0))[:2_000_000]]
        model.map_center[i] = torch.quantile(sample, MAP_NORMAL_QUANTILE)
        model.map_scale[i] = sample.std().clamp_min(1e-6)


def score_parts(model: KMDGANGenerator, prob: torch.Tensor, dists: list[torch.Tensor]) -> torch.Tensor:
    """(N, parts) of outputs()' results, unscaled."""
    return model.score_parts(prob, dists)


def synthetic_batches(samples, size: int, seed: int = 0):
    """The samples with one synthetic anomaly each, the kinds in turn (model-input batches)."""
    rng = np.random.default_rng(seed)
    k = 0
    for batch in iter_batches(samples, size, 8):
        drawn = []
        for bgr in from_tensor_layout(batch.images):
            drawn.append(make_anomaly(KINDS[k % len(KINDS)], bgr, rng)[0])
            k += 1
        yield to_tensor_layout(drawn)


def part_scales(model: KMDGANGenerator, banks, parts: torch.Tensor, holdout, few: tuple, size: int) -> torch.Tensor:
    """Each score part's unit. "spread": its standard deviation on the held-out normals. A part
    the normals hardly move (the mask is near 0 on almost every normal pixel) then gets a tiny
    unit, and a faint response on one good image outweighs everything else. "gap": the distance
    from the normals' median to the anomalies' (synthetic ones drawn on the same held-out normals,
    and the few-shot defects), so that each part counts in steps of "normal to defective"; never
    smaller than the spread (a part the anomalies hardly raise is not magnified). few: outputs() of
    the few-shot defects (calibrate_scores has them already)."""
    spread = parts.std(0).clamp_min(1e-6) if len(parts) > 1 else torch.ones(parts.shape[1])
    if model.arch.score_scale != "gap":
        return spread
    prob, dists = outputs_of(model, banks, synthetic_batches(holdout, size))
    anomalies = [score_parts(model, prob, dists)]
    if len(few[0]):
        anomalies.append(score_parts(model, *few))
    gap = torch.cat(anomalies).median(0).values - parts.median(0).values
    log.info("score parts scaled by the gap from held-out normals to anomalies %s (spread %s)",
             [round(float(g), 4) for g in gap], [round(float(s), 4) for s in spread])
    return torch.maximum(gap, spread)


@torch.no_grad()
def calibrate_scores(model: KMDGANGenerator, banks, holdout, few_shot, size: int,
                     target_false_reject_rate: float, leave_out=None) -> float:
    """Choose the memory-distance stride and aggregation (held-out normals vs the few-shot anomalies:
    the bank holds neither, so this part of the score is fairly validated), centre the score parts
    on the held-out normals and scale them (part_scales), and choose the threshold on them.
    leave_out (outputs()): the held-out normals are scored without their nearest training normals'
    memory rows, as a new part that has no twin in the memory; the map blend's levels (pixels, not
    verdicts) still come from the whole memory."""
    prob, dists = outputs(model, banks, holdout, size)
    if not len(prob):
        raise UserError("no readable held-out training normals to choose the threshold from")
    map_dists = dists
    if leave_out is not None and dists:
        prob, dists = outputs(model, banks, holdout, size, leave_out)
    few = outputs(model, banks, few_shot, size)  # the stride's choice, and the "gap" scaling
    if dists:
        candidates = {}
        for stride, dist, few_dist in zip(model.matched, dists, few[1] or [None] * len(dists)):
            mode, aucs = choose_score_mode(dist.flatten(1), None if few_dist is None else few_dist.flatten(1))
            candidates[stride] = (aucs.get(mode, 0.0), mode, aucs)
        # the best separation wins; ties keep the finer stride (first in matched)
        stride = max(candidates, key=lambda s: candidates[s][0])
        model.arch.distance_stride, model.arch.distance_score = stride, candidates[stride][1]
        model.validation = {f"stride{s}": c[2] for s, c in candidates.items()}
        log.info("memory-distance score: stride %d, %s, chosen on training data (AUROC held-out normals "
                 "vs few-shot: %s)", stride, model.arch.distance_score, model.validation)
    if model.arch.blend != "none" and dists:
        set_map_levels(model, map_dists, size)
    parts = score_parts(model, prob, dists)
    n = parts.shape[1]
    model.score_center[:n] = parts.median(0).values
    model.score_scale[:n] = part_scales(model, banks, parts, holdout, few, size)
    scores = ((parts - model.score_center[:n]) / model.score_scale[:n]).sum(1).numpy()
    threshold, rule = threshold_by_rule(scores, target_false_reject_rate, model.arch.threshold_rule)
    # what a few held-out normals can say of the false-reject rate (0 of 76 rejected: up to 4.8 %)
    rejected, upper = held_out_rejections(scores, threshold)
    model.threshold_record = {"held_out_normals": len(scores), "rejected": rejected,
                              "false_reject_upper_95": round(upper, 4), "rule": rule,
                              "twin": "left_out" if leave_out is not None and dists else "kept"}
    if leave_out is not None and dists:
        model.threshold_record["twins_left_out"] = max((len(v) for v in leave_out[1].values()), default=0)
    log.info("operating threshold %.4f (rule %s): %d of %d held-out normals at or above it; the false-reject "
             "rate on good inputs (images; tiles when tiled) may be up to %.1f %% (95 %% upper bound)", threshold, rule,
             rejected, len(scores), 100 * model.threshold_record["false_reject_upper_95"])
    return threshold
