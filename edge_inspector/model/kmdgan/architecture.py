"""KMDGAN's architecture record: what defines the network's shape and its inference settings,
stored in the artefact and checked on load (artefact.py); network.py builds the network from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class KMDGANArchitecture:
    """What defines the network's shape; stored in the artefact and checked on load."""

    match_strides: list[int] = field(default_factory=lambda: [8, 16])
    memory_matching: bool = True
    cross_scale_fusion: bool = True
    map_modulation: bool = True
    edge_context: bool = True
    pool: int = 3
    top_k: int = 100
    distance_score: str = "max"  # memory-distance aggregation in the image score; set when calibrated
    distance_stride: int = 8  # whose memory distance enters the image score; set when calibrated
    # anomaly map from the learned mask and the squashed memory distance: "max" lights up defect
    # kinds the mask never learned, but paints the distance's coarse cells (blobs); "geometric"
    # (sqrt of the product) keeps the mask's shape, the distance confirming it. True / False: the
    # values of artefacts written before the choice ("max" / mask alone)
    map_blend: bool | str = False
    # per matched stride, the side of its distance map whose positional profile divides the memory
    # distance: a location at the border (padding, fewer pooled neighbours) sits farther from the
    # bank than one in the middle on every normal image, and would light up first; empty: none
    position_sides: list[int] = field(default_factory=list)
    # the matched strides whose distance maps enter the map blend; empty: all of them (artefacts
    # written before the choice). The image score uses its own stride whatever this says
    map_strides: list[int] = field(default_factory=list)
    # the decoder's last stage at the input's resolution (FullResolutionStage); False: the mask
    # head works at stride 2 and its logits are upsampled (artefacts written before the choice)
    full_resolution: bool = False
    # the stride-4 decoder also reads each location's grey level and edge energy against its own
    # image's (SelfContrast), for defects that differ from the rest of their image but not from the
    # memory (large uneven surfaces); False: it does not (artefacts written before the option)
    self_contrast: bool = False
    # the stride-16 stage also reads pooled means of the whole image, its 2x2 and 4x4 bins, its rows
    # and its columns (GlobalContext), so that the mask can fill a large region that looks normal
    # from inside; False: it does not (artefacts written before the option)
    global_context: bool = False
    # how each image-score part is scaled before the parts are summed: "spread", its standard
    # deviation on held-out normals (artefacts written before the choice); "gap", the distance from
    # the normals' median to the anomalies' (score_calibration.part_scales)
    score_scale: str = "spread"
    # how the operating threshold is read off the held-out normals' scores (scoring.threshold_by_rule);
    # "empirical" for artefacts written before the choice
    threshold_rule: str = "empirical"
    # mask probabilities under this level count as 0 in the image score's mask part: a faint response
    # on a good image (under the mask head's own 0.5) is not standardised into a large score by the
    # mask's tiny spread on normals; 0: every probability counts (artefacts written before the choice)
    mask_score_floor: float = 0.0
    # the image score's first part from the anomaly map (the learned mask blended with the memory
    # distance, as the shipped mask is cut) instead of the learned mask alone: a confident mask
    # response where the memory distance says normal (no region ships) then scores low too;
    # False: the mask alone (artefacts written before the choice)
    score_from_map: bool = False
    # the image score's mask part from the top-k mask probabilities ("probability": it can never
    # pass (1 - centre) / spread, so a certain mask alone stays under a threshold set higher; the
    # value of artefacts written before the choice) or from their logits ("logit": no such ceiling,
    # a certain mask scores above a doubtful one)
    mask_score: str = "probability"
    # the anomaly map as the larger of the image's map and its mirror image's map mirrored back, so
    # that the shipped mask does not depend on which way round a defect lies (a held-out fray cut
    # at IoU 0.0 one way and 0.54 the other); twice the inference, the image score from the image
    # alone; False: one pass (artefacts written before the option)
    mirror_map: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def blend(self) -> str:
        """The map blend: "geometric", "max" or "none"."""
        return {True: "max", False: "none"}.get(self.map_blend, self.map_blend)

    @classmethod
    def from_config(cls, cfg) -> KMDGANArchitecture:
        """The architecture a KMDGANModelConfig asks for (its module switches, blend, profile)."""
        m = cfg.modules
        strides = sorted(cfg.match_strides)
        return cls(match_strides=strides, memory_matching=m.memory_matching,
                   cross_scale_fusion=m.cross_scale_fusion, map_modulation=m.map_modulation,
                   edge_context=m.edge_context, map_blend=cfg.map_blend,
                   map_strides=sorted(cfg.map_strides or []), full_resolution=cfg.full_resolution,
                   self_contrast=cfg.self_contrast, global_context=cfg.global_context,
                   score_scale=cfg.score_scale, threshold_rule=cfg.threshold_rule,
                   mask_score_floor=cfg.mask_score_floor, score_from_map=cfg.score_from_map,
                   mask_score=cfg.mask_score, mirror_map=cfg.mirror_map,
                   position_sides=[cfg.input_size // s for s in strides]
                   if cfg.position_profile and m.memory_matching else [])
