"""Anomalies made in feature space (as SimpleNet makes them, but with a region): a training
normal's cached backbone features get Gaussian noise inside a Perlin blob, the noise scaled per
channel by that channel's spread over the training normals. The image is left as it is, so the
decoder can only learn the defect from features unlike the normal ones and their memory distance,
not from the look of the image-space kinds (`model.feature_anomalies`, docs/kmdgan.md)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edge_inspector.data.synthetic_anomaly import perlin_mask

# the noise's standard deviation, in units of each channel's spread over the training normals:
# at 0.5 a perturbed location's memory distance is about the median normal spot's, at 2 about
# twice the worst normal spot's (measured on 60 Magnetic Tile training normals, docs/kmdgan.md)
NOISE_RANGE = (0.5, 2.0)


def channel_spread(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per stride, each channel's standard deviation over all images and locations (C,)."""
    return [f.float().transpose(0, 1).flatten(1).std(1) for f in feats]


def perturb(feats: list[torch.Tensor], mask: np.ndarray, spreads: list[torch.Tensor],
            rng: np.random.Generator) -> list[torch.Tensor]:
    """One image's features (per stride (1, C, h, w)) with noise inside mask (S, S): in each cell
    that the blob covers at least half of, so that at every stride the noise is where the mask is
    (a thin blob may fill no cell of a coarse stride) and at its full level."""
    region = torch.from_numpy(mask.astype(np.float32))[None, None]
    level = float(rng.uniform(*NOISE_RANGE))
    out = []
    for f, spread in zip(feats, spreads):
        inside = (F.adaptive_avg_pool2d(region, f.shape[-2:]) >= 0.5).float()
        noise = torch.from_numpy(rng.standard_normal(f.shape, dtype=np.float32)) * spread[None, :, None, None]
        out.append(f.float() + level * inside * noise)
    return out


def feature_anomaly(feats: list[torch.Tensor], spreads: list[torch.Tensor], size: int,
                    rng: np.random.Generator) -> tuple[list[torch.Tensor], np.ndarray]:
    """(perturbed features, the blob's mask) for one normal's features."""
    mask = perlin_mask((size, size), rng)
    return perturb(feats, mask, spreads, rng), mask
