"""KMDGAN's generator: image -> anomaly mask end to end, with its memory of normal features.

backbone (frozen, strides 4/8/16, 3x3-pooled) -> memory feature matching at the matched strides
-> projection -> cross-scale fusion -> U-Net decoder (to stride 2) gated by the memory-distance
map (with self_contrast, its stride-4 stage also reads the image's own contrasts; with
global_context, its stride-16 stage the image's pooled means) -> edge-context hybrid -> mask head,
its logits upsampled to full resolution (or, with full_resolution, a last decoder stage at full
resolution before the head).

The memory banks are forward() arguments, not weights, so a recalibrated bank can be swapped
in without touching the network (and exported graphs take them as inputs).
Image score: the mean of the top-k mask probabilities plus the memory distance at one matched
stride aggregated as the baseline does (stride and max, top-10 mean or mean: chosen on training
data), each standardised by its
level on held-out training normals (the learned mask ranks defects it has
learned; the memory distance keeps ranking the kinds it has never seen). Options: the mask part
above a floor only (mask_score_floor), or from the blended anomaly map (score_from_map), or from
the mask's logits rather than its probabilities (mask_score: logit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_inspector.model.backbone import EfficientNetLiteFeatures
from edge_inspector.model.kmdgan.architecture import KMDGANArchitecture
from edge_inspector.model.kmdgan.modules import (
    AnomalyMapModulation,
    CrossScaleFusion,
    EdgeContextHybrid,
    FullResolutionStage,
    GlobalContext,
    MemoryFeatureMatching,
    SelfContrast,
    conv_bn_relu,
    match_memory,
)
from edge_inspector.model.memory_bank.search import DEFAULT_CHUNK
from edge_inspector.model.scoring import aggregate

STRIDES = (4, 8, 16)
PROJECTED = {4: 32, 8: 64, 16: 96}  # channels after projection, per stride
DECODER = {8: 64, 4: 48, 2: 24, 1: 16}  # decoder channels, per output stride
CONTRAST = 16  # channels of the self-contrast branch, joined at stride 4
LOGIT_EPS = 1e-6  # the logit mask part's probabilities kept within [eps, 1 - eps]: logits within +-13.8


class KMDGANGenerator(nn.Module):
    def __init__(self, arch: KMDGANArchitecture, backbone: EfficientNetLiteFeatures):
        super().__init__()
        self.arch = arch
        self.backbone = backbone
        self.matched = [s for s in arch.match_strides if arch.memory_matching]
        self.matching = MemoryFeatureMatching()
        dims = dict(zip(STRIDES, backbone.channels))
        self.proj = nn.ModuleList(
            conv_bn_relu(dims[s] * (3 if s in self.matched else 1), PROJECTED[s], k=1) for s in STRIDES
        )
        self.fusion = CrossScaleFusion([PROJECTED[s] for s in STRIDES]) if arch.cross_scale_fusion else None
        self.context = GlobalContext(PROJECTED[16]) if arch.global_context else None
        self.up8 = conv_bn_relu(PROJECTED[16] + PROJECTED[8], DECODER[8])
        self.contrast = SelfContrast(CONTRAST) if arch.self_contrast else None
        self.up4 = conv_bn_relu(DECODER[8] + PROJECTED[4] + (CONTRAST if arch.self_contrast else 0), DECODER[4])
        self.up2 = conv_bn_relu(DECODER[4], DECODER[2])
        modulate = arch.map_modulation and bool(self.matched)
        self.modulation = nn.ModuleDict(
            {str(s): AnomalyMapModulation(c) for s, c in ((16, PROJECTED[16]), (8, DECODER[8]), (4, DECODER[4]))}
        ) if modulate else None
        self.hybrid = EdgeContextHybrid(DECODER[2], DECODER[4]) if arch.edge_context else None
        self.full = FullResolutionStage(DECODER[2], DECODER[1]) if arch.full_resolution else None
        self.head = nn.Conv2d(DECODER[1] if self.full is not None else DECODER[2], 1, 3, padding=1)
        # levels measured on held-out training normals when the model is fitted
        self.chunk: int | None = DEFAULT_CHUNK  # bank rows per search pass; None for export (see nearest)
        self.register_buffer("distance_scale", torch.ones(len(self.matched)))
        self.register_buffer("score_center", torch.zeros(2))
        self.register_buffer("score_scale", torch.ones(2))
        for s, side in zip(self.matched, arch.position_sides):
            self.register_buffer(f"position_{s}", torch.ones(1, 1, side, side))
        if arch.blend != "none" and self.matched:
            # per matched stride: the distance level a normal pixel rarely reaches, and its spread
            self.register_buffer("map_center", torch.zeros(len(self.matched)))
            self.register_buffer("map_scale", torch.ones(len(self.matched)))

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Frozen backbone features at strides 4, 8, 16, locally pooled."""
        with torch.no_grad():
            p = self.arch.pool
            return [F.avg_pool2d(f, p, stride=1, padding=p // 2, count_include_pad=False) for f in self.backbone(image)]

    def match(self, feats: list[torch.Tensor], banks: list[torch.Tensor], exclude=None) -> list[torch.Tensor]:
        """Nearest memory features for each matched stride."""
        return [match_memory(feats[STRIDES.index(s)], bank, self.chunk,
                             exclude=None if exclude is None else (exclude[0][i], exclude[1]))
                for i, (s, bank) in enumerate(zip(self.matched, banks))]

    def decode(self, image: torch.Tensor, feats: list[torch.Tensor], memories: list[torch.Tensor]
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mask logits (B, 1, H, W) and normalised distance maps, from features and their memories."""
        xs, distances = [], []
        for s, f, proj in zip(STRIDES, feats, self.proj):
            if s in self.matched:
                i = self.matched.index(s)
                f, d = self.matching(f, memories[i])
                distances.append(d / (self.distance_scale[i] * self.position(i)))
            # an FP16 graph (export.HalfPrecision) runs the backbone and matching in FP32: to the decoder's type here
            xs.append(proj(f.to(proj[0].weight.dtype)))
        if self.fusion is not None:
            xs = self.fusion(xs)
        x4, x8, x16 = xs
        # the stride-8 distance gates the decoder (the first matched one where 8 is not matched)
        gated_by = distances[self.matched.index(8)] if 8 in self.matched else distances[0] if distances else None
        gate = (lambda s, x: self.modulation[str(s)](x, gated_by.to(x.dtype))) if self.modulation is not None \
            else (lambda s, x: x)
        z = gate(16, x16 if self.context is None else self.context(x16))
        z = gate(8, self.up8(torch.cat([_up(z, x8), x8], 1)))
        skips = [_up(z, x4), x4]
        if self.contrast is not None:
            skips.append(self.contrast(image.to(x4.dtype), x4.shape[-2:]))
        z4 = gate(4, self.up4(torch.cat(skips, 1)))
        z = self.up2(_up(z4, scale=2))
        if self.hybrid is not None:
            z = self.hybrid(z, image.to(z.dtype), z4)
        if self.full is not None:
            return self.head(self.full(z, image.to(z.dtype))).float(), distances
        # without the full-resolution stage the head works at stride 2 and its logits are upsampled
        return _up(self.head(z), size=image.shape[-2:]).float(), distances

    def float_buffers(self) -> None:
        """The calibration levels back in float32, for an FP16 graph whose distances and score stay FP32."""
        for name, buf in list(self.named_buffers(recurse=False)):
            setattr(self, name, buf.float())

    def position(self, i: int) -> torch.Tensor | float:
        """The positional profile of matched stride i (mean 1 over the map), or 1 without one."""
        return getattr(self, f"position_{self.matched[i]}") if self.arch.position_sides else 1.0

    def score_parts(self, prob: torch.Tensor, distances: list[torch.Tensor], mode: str | None = None,
                    amap: torch.Tensor | None = None) -> torch.Tensor:
        """(B, parts): the top-k mean of the mask and, with memory, the aggregated memory distance.
        distances: (B, 1, h, w) per matched stride; amap: anomaly_map()'s result where the caller has it."""
        k = min(self.arch.top_k, prob[0].numel())
        if self.arch.score_from_map and distances and self.arch.blend != "none":
            prob = self.anomaly_map(prob, distances) if amap is None else amap
        p = prob.float().flatten(1)  # float32: standardised by small spreads
        if self.arch.mask_score_floor > 0:
            p = torch.where(p >= self.arch.mask_score_floor, p, torch.zeros_like(p))
        top = p.topk(k, dim=1).values
        if self.arch.mask_score == "logit":  # log(p / (1 - p)), clamped: float32's sigmoid reaches 1
            top = top.clamp(LOGIT_EPS, 1 - LOGIT_EPS)
            top = top.log() - torch.log1p(-top)
        parts = [top.mean(1)]
        if distances:
            d = distances[self.distance_index]
            parts.append(aggregate(d.flatten(1), mode or self.arch.distance_score))
        return torch.stack(parts, 1)

    @property
    def distance_index(self) -> int:
        s = self.arch.distance_stride
        return self.matched.index(s) if s in self.matched else 0

    def score(self, prob: torch.Tensor, distances: list[torch.Tensor], amap: torch.Tensor | None = None
              ) -> torch.Tensor:
        """Image score: the sum of the parts, each standardised by its level on held-out normals."""
        s = self.score_parts(prob, distances, amap=amap)
        n = s.shape[1]
        return ((s - self.score_center[:n].float()) / self.score_scale[:n].float()).sum(1)

    def distance_map(self, distances: list[torch.Tensor], size) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1]: the mean over the blend's strides of each upsampled distance
        map, squashed so that 0.5 is the level a held-out normal pixel reaches once in a thousand."""
        maps = [torch.sigmoid((_up(distances[i], size=size) - self.map_center[i]) / self.map_scale[i])
                for i in self.map_indices]
        return torch.stack(maps).mean(0)

    @property
    def map_indices(self) -> list[int]:
        """Indices into the matched strides of those the map blend uses (all where it names none)."""
        chosen = [i for i, s in enumerate(self.matched) if s in self.arch.map_strides]
        return chosen or list(range(len(self.matched)))

    def anomaly_map(self, prob: torch.Tensor, distances: list[torch.Tensor]) -> torch.Tensor:
        mode = self.arch.blend
        if mode == "none" or not distances:
            return prob
        distance = self.distance_map(distances, prob.shape[-2:])
        return (prob * distance).sqrt() if mode == "geometric" else torch.maximum(prob, distance)

    def forward(self, image: torch.Tensor, *banks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly map (B, H, W) in [0, 1] and image score (B,). banks: one per matched stride."""
        amap, score = self.map_and_score(*self.one_pass(image, banks))
        if self.arch.mirror_map:  # the mirror image's map only: the score is the image's own
            mirrored = self.anomaly_map(*self.one_pass(image.flip(-1), banks))[:, 0]
            amap = torch.maximum(amap, mirrored.flip(-1))
        return amap, score

    def one_pass(self, image: torch.Tensor, banks) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The mask probabilities (B, 1, H, W) and distance maps of one pass over the image."""
        feats = self.features(image)
        logits, distances = self.decode(image, feats, self.match(feats, list(banks)))
        return torch.sigmoid(logits), distances

    def map_and_score(self, prob: torch.Tensor, distances: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly map (B, H, W) and image score (B,) from the mask probabilities and distance maps;
        the map is built once, also where the score reads it (score_from_map)."""
        amap = self.anomaly_map(prob, distances)
        return amap[:, 0], self.score(prob, distances, amap=amap)


def _up(x: torch.Tensor, like: torch.Tensor | None = None, scale: int | None = None, size=None) -> torch.Tensor:
    if like is not None:
        size = like.shape[-2:]
    if scale is not None:
        size = (x.shape[-2] * scale, x.shape[-1] * scale)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def generator_for(cfg) -> KMDGANGenerator:
    """A new generator as a KMDGANModelConfig asks for it: architecture and frozen backbone."""
    backbone = EfficientNetLiteFeatures(STRIDES, cfg.backbone.weights, cfg.backbone.name)
    return KMDGANGenerator(KMDGANArchitecture.from_config(cfg), backbone)
