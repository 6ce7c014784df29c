"""KMDGAN's building blocks, each a small nn.Module that works on its own (and is tested so)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_inspector.model.memory_bank.search import DEFAULT_CHUNK, nearest, own_rows


def conv_bn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def match_memory(f: torch.Tensor, bank: torch.Tensor, chunk: int | None = DEFAULT_CHUNK,
                 exclude: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The nearest bank entry of every location of f (B, C, h, w), returned as (B, C, h, w).

    exclude: (owner id of each bank row, owner id(s) of each batch item: (B,) or (B, K)); a training
    image must not find itself in the bank, or it learns from distances of zero it never sees in service.
    """
    b, c, h, w = f.shape
    q = f.permute(0, 2, 3, 1).reshape(-1, c)
    blank = None if exclude is None else own_rows(exclude[0], exclude[1], h * w)
    _, idx = nearest(q, bank, chunk, blank)
    return bank[idx].to(f.dtype).view(b, h, w, c).permute(0, 3, 1, 2)


class MemoryFeatureMatching(nn.Module):
    """Input features against the memory of normal features: [f, ReLU(f - m), ReLU(m - f)] and |f - m|."""

    def forward(self, f: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = f - m
        # the distance in float32 in any precision: it is standardised by small spreads downstream
        distance = diff.float().pow(2).sum(1, keepdim=True).clamp_min(1e-12).sqrt()
        return torch.cat([f, F.relu(diff), F.relu(-diff)], 1), distance


class ChannelAttention(nn.Module):
    def __init__(self, ch: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(ch, ch // reduction, 1), nn.ReLU(inplace=True), nn.Conv2d(ch // reduction, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class CoordinateAttention(nn.Module):
    """Hou et al. 2021: attention along rows and along columns, keeping position."""

    def __init__(self, ch: int, reduction: int = 4):
        super().__init__()
        mid = max(8, ch // reduction)
        self.shared = conv_bn_relu(ch, mid, k=1)
        self.to_h = nn.Conv2d(mid, ch, 1)
        self.to_w = nn.Conv2d(mid, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled = torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], 2)
        y = self.shared(pooled)
        yh, yw = y[:, :, :h], y[:, :, h:].transpose(2, 3)
        return x * torch.sigmoid(self.to_h(yh)) * torch.sigmoid(self.to_w(yw))


class CrossScaleFusion(nn.Module):
    """Each scale takes the others resized onto its grid; channel + coordinate attention keep what
    is new to it (the residual), so that scales stop repeating each other."""

    def __init__(self, channels: list[int]):
        super().__init__()
        total = sum(channels)
        self.mix = nn.ModuleList(conv_bn_relu(total, c, k=1) for c in channels)
        self.channel = nn.ModuleList(ChannelAttention(c) for c in channels)
        self.coord = nn.ModuleList(CoordinateAttention(c) for c in channels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, x in enumerate(xs):
            size = x.shape[-2:]
            gathered = [y if y.shape[-2:] == size else F.interpolate(y, size=size, mode="bilinear", align_corners=False) for y in xs]
            y = self.mix[i](torch.cat(gathered, 1))
            out.append(x + self.coord[i](self.channel[i](y)))
        return out


class AnomalyMapModulation(nn.Module):
    """The memory-distance map gates decoder features: x * (1 + sigmoid(g(d))), per channel.

    The distance arrives normalised by its level on held-out normals, so 1 means 'as far from
    memory as a normal part's worst spot'.
    """

    def __init__(self, ch: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Conv2d(1, ch, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        if distance.shape[-2:] != x.shape[-2:]:
            distance = F.interpolate(distance, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * (1 + torch.sigmoid(self.gate(distance)))


def sobel_kernel() -> torch.Tensor:
    """(2, 1, 3, 3): horizontal and vertical Sobel filters."""
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    return torch.stack([sobel, sobel.T])[:, None]


def gray_edges(image: torch.Tensor, kernel: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """The image's grayscale at the given size, and its Sobel edges (B, 2, H, W)."""
    gray = image.mean(1, keepdim=True)
    if gray.shape[-2:] != tuple(size):
        gray = F.interpolate(gray, size=size, mode="bilinear", align_corners=False)
    return gray, F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernel)


class EdgeContextHybrid(nn.Module):
    """Edge branch (fixed Sobel filters on the image, plus a learned conv) and context branch
    (dilated convolutions on coarse features), merged before the mask head."""

    def __init__(self, ch: int, context_ch: int):
        super().__init__()
        self.register_buffer("sobel", sobel_kernel())
        self.edge = conv_bn_relu(ch + 2, ch)
        self.context = nn.Sequential(conv_bn_relu(context_ch, ch, dilation=2), conv_bn_relu(ch, ch, dilation=4))
        self.merge = conv_bn_relu(3 * ch, ch, k=1)

    def forward(self, x: torch.Tensor, image: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        _, edges = gray_edges(image, self.sobel, x.shape[-2:])
        e = self.edge(torch.cat([x, edges], 1))
        c = F.interpolate(self.context(coarse), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.merge(torch.cat([e, c, x], 1))


class FullResolutionStage(nn.Module):
    """The decoder's last step to the input's resolution: its stride-2 features upsampled, with the
    grayscale image and its Sobel edges at full resolution, so that the mask can follow edges
    finer than two pixels (thin cracks) instead of being upsampled from stride 2."""

    def __init__(self, ch: int, out: int):
        super().__init__()
        self.register_buffer("sobel", sobel_kernel())
        self.conv = conv_bn_relu(ch + 3, out)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        size = image.shape[-2:]
        gray, edges = gray_edges(image, self.sobel, size)
        up = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([up, gray, edges], 1))


class SelfContrast(nn.Module):
    """Each location's grey level and edge energy against its own image's, at stride 4.

    A surface a little darker, brighter or rougher over a large part of the part (Magnetic Tile's
    uneven surfaces) is far from the rest of its own image but not from the memory of normal
    features (good tiles hold such texture somewhere) and, inside the region, not from its
    neighbours either: only a comparison across the whole image sees it. Local means over windows
    of 3, 7 and 15 cells (12 to 60 pixels), each standardised by the image's mean and spread.
    """

    WINDOWS = (3, 7, 15)

    def __init__(self, out: int):
        super().__init__()
        self.register_buffer("sobel", sobel_kernel())
        self.conv = conv_bn_relu(2 * len(self.WINDOWS), out)

    def forward(self, image: torch.Tensor, size) -> torch.Tensor:
        return self.conv(self.contrasts(image, size))

    def contrasts(self, image: torch.Tensor, size) -> torch.Tensor:
        """(B, 6, h, w): local grey level, then local edge energy, per window, in units of the image's spread."""
        gray, edges = gray_edges(image, self.sobel, image.shape[-2:])
        energy = edges.pow(2).sum(1, keepdim=True).sqrt()
        factor = image.shape[-1] // size[-1]  # the stride; a plain pooling exports to ONNX everywhere
        channels = []
        for x in (gray, energy):
            x = F.avg_pool2d(x, factor)
            mean = x.mean((2, 3), keepdim=True)
            spread = (x - mean).pow(2).mean((2, 3), keepdim=True).sqrt() + 1e-3  # 1e-3: a quarter of one grey step
            for w in self.WINDOWS:
                local = F.avg_pool2d(x, w, stride=1, padding=w // 2, count_include_pad=False)
                channels.append((local - mean) / spread)
        return torch.cat(channels, 1)


class GlobalContext(nn.Module):
    """The stride-16 features with what the whole image holds: pyramid pooling (Zhao et al. 2017,
    PSPNet: means over 1x1, 2x2 and 4x4 bins) and strip pooling (Hou et al. 2020: the mean of each
    whole row and of each whole column), each through a 1x1 conv, upsampled and joined.

    A defect that covers a large part of the image (Magnetic Tile's uneven surfaces: a band across
    the part, bounded by a step) looks normal from inside: the decoder's convolutions see the step,
    not the band, and the mask lights the boundary. A location that knows its row's and its
    quarter's mean can be filled with the rest of its band.
    """

    BINS = (1, 2, 4)

    def __init__(self, ch: int, inner: int = 16):
        super().__init__()
        # no batch norm on the pooled means: one value per image and channel in the 1x1 bin
        self.pools = nn.ModuleList(nn.Sequential(nn.Conv2d(ch, inner, 1), nn.ReLU(inplace=True))
                                   for _ in range(len(self.BINS) + 2))
        self.out = conv_bn_relu(ch + inner * (len(self.BINS) + 2), ch, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled = [_bin_means(x, b) for b in self.BINS] + [x.mean(3, keepdim=True), x.mean(2, keepdim=True)]
        ups = [F.interpolate(conv(p), size=(h, w), mode="bilinear", align_corners=False)
               for conv, p in zip(self.pools, pooled)]
        return x + self.out(torch.cat([x, *ups], 1))


def _bin_means(x: torch.Tensor, bins: int) -> torch.Tensor:
    """(B, C, bins, bins): the means of x over a bins x bins grid; a reshape where the grid divides
    the map, since ONNX export takes no adaptive pooling (or kernel) from traced sizes."""
    b, c, h, w = x.shape
    if h % bins or w % bins:
        return F.adaptive_avg_pool2d(x, bins)
    return x.reshape(b, c, bins, h // bins, bins, w // bins).mean((3, 5))


class PatchDiscriminator(nn.Module):
    """Judges (image, mask) pairs patch-wise: one real/fake logit per 8x8-pixel-stride patch."""

    def __init__(self, ch: int = 32):
        super().__init__()
        layers, cin = [], 2  # grayscale image + mask
        for cout in (ch, 2 * ch, 4 * ch):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image.mean(1, keepdim=True) * 2 - 1, mask * 2 - 1], 1))
