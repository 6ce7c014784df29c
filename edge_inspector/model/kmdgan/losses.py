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


def _jaccard_steps(truth_sorted: torch.Tensor) -> torch.Tensor:
    """How much the Jaccard loss (1 - IoU) grows as each pixel, in the order given, is added to the
    predicted region (Berman et al., the Lovasz extension): its sum with the hinge errors sorted
    the same way is a convex surrogate of the image's IoU loss."""
    total = truth_sorted.sum()
    intersection = total - truth_sorted.cumsum(0)
    union = total + (1 - truth_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_hinge_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The Lovasz hinge per defective image (a surrogate of 1 - IoU on the logits), averaged over
    them: it weighs what eval's per-image mask IoU weighs. Images without a defect pixel are left to
    the other terms; none: 0."""
    flat_logits, flat_target = logits.flatten(1), target.flatten(1)
    has = flat_target.sum(1) > 0
    if not has.any():
        return logits.sum() * 0.0
    losses = []
    for x, t in zip(flat_logits[has], flat_target[has]):
        errors = 1 - x * (2 * t - 1)
        errors, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(F.relu(errors), _jaccard_steps(t[order])))
    return torch.stack(losses).mean()


def adversarial_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))
