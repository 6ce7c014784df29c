"""Fitting the memory-bank baseline: features of the training normals -> subsampled bank -> threshold."""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm import tqdm

from edge_inspector.config import MemoryBankModelConfig
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.sample import Split
from edge_inspector.model.backbone import EfficientNetLite0Features
from edge_inspector.model.memory_bank import SAMPLERS
from edge_inspector.model.memory_bank_scorer import MemoryBankScorer
from edge_inspector.threshold import split_holdout, threshold_from_normals

log = logging.getLogger(__name__)


def build_memory_bank_scorer(cfg: MemoryBankModelConfig) -> MemoryBankScorer:
    return MemoryBankScorer(EfficientNetLite0Features((8, 16), cfg.backbone.weights), pool=cfg.pool, sigma=cfg.sigma)


def score_samples(model: MemoryBankScorer, samples, size: int, batch_size: int = 8) -> np.ndarray:
    scores = []
    for batch in iter_batches(samples, size, batch_size):
        scores.append(model(torch.from_numpy(batch.images))[1].numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def fit_memory_bank(split: Split, cfg: MemoryBankModelConfig, target_false_reject_rate: float,
                    seed: int = 0, batch_size: int = 8, progress: bool = True) -> MemoryBankScorer:
    """Fit on the training normals (the few-shot anomalies are not used by this baseline)."""
    model = build_memory_bank_scorer(cfg)
    fit_part, holdout = split_holdout(split.train_normal)
    feats = []
    batches = iter_batches(fit_part, cfg.input_size, batch_size)
    for batch in tqdm(batches, total=-(-len(fit_part) // batch_size), desc="memory bank", disable=not progress):
        f = model.features(torch.from_numpy(batch.images))
        feats.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
    if not feats:
        raise ValueError("no readable training normals to build the memory bank from")
    bank = SAMPLERS[cfg.sampler](cfg.bank_size, seed).run(torch.cat(feats))
    model.memory = bank.contiguous()
    held_scores = score_samples(model, holdout, cfg.input_size, batch_size)
    model.threshold.fill_(threshold_from_normals(held_scores, target_false_reject_rate))
    log.info("memory bank %d x %d from %d images; threshold %.4f from %d held-out normals",
             *bank.shape, len(fit_part), float(model.threshold), len(held_scores))
    return model
