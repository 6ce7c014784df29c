"""After training: choose the memory-distance part of the image score, set the map blend's levels
and standardise the score parts on held-out training normals, then choose the threshold on them."""

from __future__ import annotations

import logging

import torch

from edge_inspector.data.loader import iter_batches
from edge_inspector.errors import UserError
from edge_inspector.model.kmdgan.network import KMDGANGenerator
from edge_inspector.model.scoring import choose_score_mode, held_out_rejections, threshold_from_normals

log = logging.getLogger(__name__)

@torch.no_grad()
def outputs(model: KMDGANGenerator, banks, samples, size: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mask probabilities (N, 1, H, W) and, per matched stride, distance maps (N, h*w)."""
    probs, dists = [], []
    for batch in iter_batches(samples, size, 8):
        image = torch.from_numpy(batch.images)
        feats = model.features(image)
        logits, distances = model.decode(image, feats, model.match(feats, banks))
        probs.append(torch.sigmoid(logits))
        dists.append([d.flatten(1) for d in distances])
    if not probs:
        return torch.zeros(0), []
    return torch.cat(probs), [torch.cat(per) for per in zip(*dists)]


MAP_NORMAL_QUANTILE = 0.999  # a held-out normal pixel reaches the blend's 0.5 once in a thousand


def set_map_levels(model: KMDGANGenerator, dists: list[torch.Tensor], size: int) -> None:
    """The map blend's centre and spread per stride, from held-out normals' upsampled distances."""
    for i, (stride, d) in enumerate(zip(model.matched, dists)):
        side = size // stride
        up = torch.nn.functional.interpolate(d.view(-1, 1, side, side), size=(size, size), mode="bilinear",
                                             align_corners=False).flatten()
        sample = up[torch.randperm(up.numel(), generator=torch.Generator().manual_seed(0))[:2_000_000]]
        model.map_center[i] = torch.quantile(sample, MAP_NORMAL_QUANTILE)
        model.map_scale[i] = sample.std().clamp_min(1e-6)


@torch.no_grad()
def calibrate_scores(model: KMDGANGenerator, banks, holdout, few_shot, size: int,
                     target_false_reject_rate: float) -> float:
    """Choose the memory-distance stride and aggregation (held-out normals vs the few-shot anomalies:
    the bank holds neither, so this part of the score is fairly validated), standardise the score
    parts on the held-out normals, and choose the threshold on them."""
    prob, dists = outputs(model, banks, holdout, size)
    if not len(prob):
        raise UserError("no readable held-out training normals to choose the threshold from")
    if dists:
        _, few_dists = outputs(model, banks, few_shot, size)
        candidates = {}
        for stride, dist, few in zip(model.matched, dists, few_dists or [None] * len(dists)):
            mode, aucs = choose_score_mode(dist, few)
            candidates[stride] = (aucs.get(mode, 0.0), mode, aucs)
        # the best separation wins; ties keep the finer stride (first in matched)
        stride = max(candidates, key=lambda s: candidates[s][0])
        model.arch.distance_stride, model.arch.distance_score = stride, candidates[stride][1]
        model.validation = {f"stride{s}": c[2] for s, c in candidates.items()}
        log.info("memory-distance score: stride %d, %s, chosen on training data (AUROC held-out normals "
                 "vs few-shot: %s)", stride, model.arch.distance_score, model.validation)
    if model.arch.blend != "none" and dists:
        set_map_levels(model, dists, size)
    parts = model.score_parts(prob, [d.view(len(prob), 1, -1) for d in dists])
    n = parts.shape[1]
    model.score_center[:n] = parts.median(0).values
    model.score_scale[:n] = parts.std(0).clamp_min(1e-6) if len(parts) > 1 else 1.0
    scores = ((parts - model.score_center[:n]) / model.score_scale[:n]).sum(1).numpy()
    threshold = threshold_from_normals(scores, target_false_reject_rate)
    # what a few held-out normals can say of the false-reject rate (0 of 76 rejected: up to 4.8 %)
    rejected, upper = held_out_rejections(scores, threshold)
    model.threshold_record = {"held_out_normals": len(scores), "rejected": rejected,
                              "false_reject_upper_95": round(upper, 4)}
    log.info("operating threshold %.4f: %d of %d held-out normals at or above it; the false-reject rate on good "
             "inputs (images; tiles when tiled) may be up to %.1f %% (95 %% upper bound)", threshold, rejected,
             len(scores), 100 * model.threshold_record["false_reject_upper_95"])
    return threshold
