"""The memory-bank baseline (PatchCore-style): the scorer KMDGAN must beat in the same run.

Features of a frozen EfficientNet-Lite0 at strides 8 and 16, each 3x3 average-pooled (local
context), the coarse one upsampled onto the fine grid and concatenated; the anomaly map is each
location's distance to its nearest memory entry, upsampled to the input and smoothed; the image
score aggregates the patch distances: their maximum, the mean of the top 10, or their mean
(which one is chosen on training data: see baseline.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edge_inspector.model.backbone import EfficientNetLiteFeatures
from edge_inspector.model.memory_bank.search import DEFAULT_CHUNK, nearest, own_rows
from edge_inspector.model.scoring import aggregate


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


class MemoryBankScorer(nn.Module):
    def __init__(self, backbone: EfficientNetLiteFeatures, pool: int = 3, sigma: float = 4.0,
                 feature_dim: int | None = None, chunk: int = DEFAULT_CHUNK):
        super().__init__()
        self.backbone = backbone
        self.pool, self.chunk = pool, chunk
        self.score_mode = "max"
        dim = feature_dim or sum(backbone.channels)
        # buffers travel with the weights (and into exported graphs)
        self.register_buffer("memory", torch.zeros(0, dim))
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self.register_buffer("blur", gaussian_kernel(sigma))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) locally pooled features on the finest grid."""
        levels = self.backbone(x)
        size = levels[0].shape[-2:]
        out = []
        for f in levels:
            f = F.avg_pool2d(f, self.pool, stride=1, padding=self.pool // 2, count_include_pad=False)
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            out.append(f)
        return torch.cat(out, 1)

    def smooth(self, maps: torch.Tensor) -> torch.Tensor:
        k = self.blur
        r = k.numel() // 2
        maps = F.conv2d(F.pad(maps, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(maps, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))

    @torch.no_grad()
    def patch_distances(self, x: torch.Tensor, exclude: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> torch.Tensor:
        """(B, 1, h, w): each location's distance to its nearest memory entry. exclude: (owner of
        each bank row, owners of each image (B, K; -1 pads)): rows an image must not be matched to."""
        f = self.features(x)
        b, c, h, w = f.shape
        blank = None if exclude is None else own_rows(exclude[0], exclude[1], h * w)
        d, _ = nearest(f.permute(0, 2, 3, 1).reshape(-1, c), self.memory, self.chunk, blank)
        return d.sqrt().view(b, 1, h, w)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly map (B, H, W) at input resolution and image score (B,)."""
        patch = self.patch_distances(x)
        maps = F.interpolate(patch, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.smooth(maps)[:, 0], aggregate(patch.flatten(1), self.score_mode)
