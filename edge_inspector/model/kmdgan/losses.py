"""Segmentation and adversarial losses for training the mask generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss (Lin et al.): down-weights the easy pixels, i.e. almost all normal ones."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    return ((1 - p_t) ** gamma * bce).mean()


def dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice over the whole batch (so that all-normal images do not make it undefined)."""
    inter = (prob * target).sum()
    return 1 - (2 * inter + eps) / (prob.sum() + target.sum() + eps)


def tversky_loss(prob: torch.Tensor, target: torch.Tensor, beta: float, eps: float = 1.0) -> torch.Tensor:
    """Soft Tversky index over the whole batch (Salehi et al.): a missed defect pixel costs beta,
    a false one 1 - beta; beta 0.5 is the soft Dice. Above 0.5 it works against masks that cover
    only part of a thin or faint defect."""
    inter = (prob * target).sum()
    missed, extra = ((1 - prob) * target).sum(), (prob * (1 - target)).sum()
    return 1 - (inter + eps) / (inter + beta * missed + (1 - beta) * extra + eps)


def image_dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice per defective image, averaged over them: a small defect weighs as much as a large
    one (over the batch, a large synthetic blob outweighs a pit), as in the per-image mask IoU that
    eval reports. Images without a defect pixel are left to the other terms; none: 0."""
    dims = tuple(range(1, prob.dim()))
    has = target.sum(dims) > 0
    if not has.any():
        return prob.sum() * 0.0
    p, t = prob[has], target[has]
    inter = (p * t).sum(dims)
    return (1 - (2 * inter + eps) / (p.sum(dims) + t.sum(dims) + eps)).mean()


def adversarial_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))
