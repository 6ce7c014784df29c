"""Fitting the memory-bank baseline: features of the training normals -> subsampled bank -> threshold."""

from __future__ import annotations

import logging

import torch
from tqdm import tqdm

from edge_inspector.config import MemoryBankModelConfig
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.sample import Split
from edge_inspector.model.backbone import EfficientNetLiteFeatures
from edge_inspector.model.memory_bank.scorer import MemoryBankScorer
from edge_inspector.model.memory_bank.search import SAMPLERS, owners_left_out
from edge_inspector.model.scoring import aggregate, choose_score_mode, split_holdout, threshold_from_normals

log = logging.getLogger(__name__)


def build_memory_bank_scorer(cfg: MemoryBankModelConfig) -> MemoryBankScorer:
    backbone = EfficientNetLiteFeatures((8, 16), cfg.backbone.weights, cfg.backbone.name)
    return MemoryBankScorer(backbone, pool=cfg.pool, sigma=cfg.sigma)


def patch_distances(model: MemoryBankScorer, samples, size: int, batch_size: int = 8,
                    leave_out: dict | None = None) -> torch.Tensor:
    """(N, h*w) patch distances of the readable samples. leave_out: {sample: [fitting normals]} whose
    bank rows (model.owners) each sample is scored without, as if the memory had never seen them."""
    out = []
    for b in iter_batches(samples, size, batch_size):
        exclude = None if leave_out is None else (model.owners, owners_left_out(leave_out, b.samples))
        out.append(model.patch_distances(torch.from_numpy(b.images), exclude).flatten(1))
    return torch.cat(out) if out else torch.zeros(0, 1)


def fit_memory_bank(split: Split, cfg: MemoryBankModelConfig, target_false_reject_rate: float,
                    seed: int = 0, batch_size: int = 8, progress: bool = True) -> MemoryBankScorer:
    """Fit the bank on the training normals; held-out normals set the threshold, and with the few-shot
    anomalies choose the score aggregation (cfg.score "auto"). No anomaly ever enters the bank."""
    model = build_memory_bank_scorer(cfg)
    fit_part, holdout = split_holdout(split.train_normal)
    feats, owners, index = [], [], {s: i for i, s in enumerate(fit_part)}
    batches = iter_batches(fit_part, cfg.input_size, batch_size)
    for batch in tqdm(batches, total=-(-len(fit_part) // batch_size), desc="memory bank", disable=not progress):
        f = model.features(torch.from_numpy(batch.images))
        feats.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
        owners.append(torch.tensor([index[s] for s in batch.samples]).repeat_interleave(f.shape[2] * f.shape[3]))
    if not feats:
        raise ValueError("no readable training normals to build the memory bank from")
    feats = torch.cat(feats)
    rows = SAMPLERS[cfg.sampler](cfg.bank_size, seed).rows(feats)
    model.memory = feats[rows].contiguous()
    # which fitting normal (index into the fitting part) each bank row came from: not stored in the
    # artefact; tools/new_parts.py reads it to score parts without their own tile's rows
    model.owners = torch.cat(owners)[rows]
    held = patch_distances(model, holdout, cfg.input_size, batch_size)
    model.score_mode, model.validation = cfg.score, {}
    if cfg.score == "auto":
        few = patch_distances(model, split.few_shot, cfg.input_size, batch_size)
        model.score_mode, model.validation = choose_score_mode(held, few)
        log.info("image score %s chosen on training data (AUROC held-out normals vs few-shot: %s)",
                 model.score_mode, model.validation)
    held_scores = aggregate(held, model.score_mode).numpy()
    model.threshold.fill_(threshold_from_normals(held_scores, target_false_reject_rate))
    log.info("memory bank %d x %d from %d images; threshold %.4f from %d held-out normals",
             *model.memory.shape, len(fit_part), float(model.threshold), len(held_scores))
    return model
