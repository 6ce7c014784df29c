"""The anomaly map snapped to the image's own edges: a guided filter (He, Sun and Tang, 2013) with
the input's grey level as guide.

Why: the memory distance is a 8- or 16-pixel cell and the learned mask is decoded from stride 2,
so both paint a soft blob around a small defect. Within each window the filter fits the map as a
linear function of the image's brightness: where the defect is darker or brighter than what
surrounds it, the map follows the defect's outline; on a flat good surface it is a local mean.
Box means only (average pooling), so it exports to ONNX and TensorRT as the rest of the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edge_inspector.model.backbone import MEAN, STD


def box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean over each (2 radius + 1)-square window, the border's windows cut to the image."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def grey(image: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1]: the mean of the normalised input's channels, un-normalised."""
    return image.float().mean(1, keepdim=True) * STD + MEAN


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """src (B, 1, H, W) filtered with guide (B, 1, H, W): q = a guide + b, a and b fitted per window
    by least squares and averaged over the windows that hold each pixel. eps (in the guide's
    variance) keeps a from following brightness steps smaller than about sqrt(eps)."""
    mean_i, mean_p = box(guide, radius), box(src, radius)
    cov = box(guide * src, radius) - mean_i * mean_p
    var = box(guide * guide, radius) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box(a, radius) * guide + box(b, radius)


def guided_map(image: torch.Tensor, amap: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """The anomaly map (B, 1, H, W) in [0, 1] guided by the image's grey level, kept in [0, 1]."""
    return guided_filter(grey(image), amap.float(), radius, eps).clamp(0, 1)
