"""What KMDGAN training computes once: the frozen backbone features of the training normals and
few-shot anomalies, the memory banks, and each item's nearest memory features (its own image left
out of the search); and the distance normalisation taken from the training normals."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from edge_inspector.config import KMDGANModelConfig
from edge_inspector.config.station import MAX_HELD_OUT_TWINS
from edge_inspector.data.imageio import from_tensor_layout, to_tensor_layout
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.sample import Split
from edge_inspector.errors import UserError
from edge_inspector.model.kmdgan.network import STRIDES, KMDGANGenerator, generator_for
from edge_inspector.model.memory_bank.search import SAMPLERS
from edge_inspector.model.scoring import split_holdout

log = logging.getLogger(__name__)

FEATURE_BATCH = 16  # images per backbone pass while caching features (memory, not accuracy)


@dataclass
class Pool:
    """Training items whose features never change, computed once."""

    images: np.ndarray  # (N, S, S, 3) uint8 BGR
    masks: np.ndarray  # (N, S, S) bool
    feats: list[torch.Tensor]  # per stride (N, C, h, w), float16
    memories: list[torch.Tensor]  # per matched stride: nearest memory features (own image left out)


@dataclass
class Banks:
    banks: list[torch.Tensor]  # per matched stride (M, C)
    owners: list[torch.Tensor]  # index of the normal image each bank row came from

    def hold(self, banks: list[torch.Tensor]) -> bool:
        """Whether banks (a trained artefact's memory) are these: its rows' owners are then these owners."""
        return all(torch.equal(a, b) for a, b in zip(self.banks, banks))


def read_all(samples, size: int) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for batch in iter_batches(samples, size, FEATURE_BATCH):
        images.append(from_tensor_layout(batch.images))
        masks.append(batch.masks)
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), bool)
    return np.concatenate(images), np.concatenate(masks)


def as_tensor(images_bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(to_tensor_layout(list(images_bgr)))


def features_of(model: KMDGANGenerator, images: np.ndarray, progress: bool, desc: str) -> list[torch.Tensor]:
    feats: list[list[torch.Tensor]] = [[] for _ in STRIDES]
    for start in tqdm(range(0, len(images), FEATURE_BATCH), desc=desc, disable=not progress):
        for i, f in enumerate(model.features(as_tensor(images[start : start + FEATURE_BATCH]))):
            feats[i].append(f.half())
    return [torch.cat(f) for f in feats]


def build_banks(model: KMDGANGenerator, feats: list[torch.Tensor], bank_size: int, seed: int,
                sampler: str = "random") -> Banks:
    banks, owners = [], []
    for s in model.matched:
        f = feats[STRIDES.index(s)]
        n, c, h, w = f.shape
        flat = f.permute(0, 2, 3, 1).reshape(-1, c)
        keep = SAMPLERS[sampler](bank_size, seed).rows(flat)
        banks.append(flat[keep].float().contiguous())
        owners.append(keep // (h * w))
    return Banks(banks, owners)


def nearest_memories(model: KMDGANGenerator, feats: list[torch.Tensor], banks: Banks, item_owners: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for start in range(0, len(item_owners), FEATURE_BATCH):
        items = slice(start, start + FEATURE_BATCH)
        out.append([m.half() for m in model.match([f[items].float() for f in feats], banks.banks,
                                                  exclude=(banks.owners, item_owners[items]))])
    return [torch.cat([m[i] for m in out]) for i in range(len(model.matched))] if model.matched else []


def build_pool(model: KMDGANGenerator, images: np.ndarray, masks: np.ndarray, banks: Banks | None,
               item_owners: torch.Tensor, progress: bool, desc: str, feats: list[torch.Tensor] | None = None) -> Pool:
    feats = feats if feats is not None else features_of(model, images, progress, desc)
    memories = nearest_memories(model, feats, banks, item_owners) if banks is not None else []
    return Pool(images, masks, feats, memories)


def flips(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image and mask as is, mirrored left-right, upside down, and both."""
    variants = [(images, masks), (images[:, :, ::-1], masks[:, :, ::-1]), (images[:, ::-1], masks[:, ::-1]),
                (images[:, ::-1, ::-1], masks[:, ::-1, ::-1])]
    return (np.ascontiguousarray(np.concatenate([v[0] for v in variants])),
            np.ascontiguousarray(np.concatenate([v[1] for v in variants])))


def set_distance_scale(model: KMDGANGenerator, normals: Pool) -> None:
    """Normalise each memory distance by its positional profile (where the model has one: the mean
    distance at each location over the training normals, relative to the map's mean; their memories
    leave their own image out, as in service), then by its typical worst spot on a training normal."""
    for i, s in enumerate(model.matched):
        f, m = normals.feats[STRIDES.index(s)].float(), normals.memories[i].float()
        d = (f - m).pow(2).sum(1, keepdim=True).sqrt()
        if model.arch.position_sides:
            at = d.mean(0, keepdim=True)
            getattr(model, f"position_{s}").copy_((at / at.mean()).clamp_min(1e-3))
        worst = (d / model.position(i)).flatten(1).amax(1)
        model.distance_scale[i] = worst.mean().clamp_min(1e-6)


def image_means(feats: list[torch.Tensor]) -> torch.Tensor:
    """(N, C): each image's pooled backbone features averaged over the image, every stride."""
    return torch.cat([f.float().mean((2, 3)) for f in feats], 1)


@torch.no_grad()
def image_means_of(model: KMDGANGenerator, samples, size: int) -> tuple[torch.Tensor, list]:
    """image_means() of the readable samples, and those samples."""
    means, kept = [], []
    for batch in iter_batches(samples, size, FEATURE_BATCH):
        means.append(image_means(model.features(torch.from_numpy(batch.images))))
        kept += batch.samples
    return (torch.cat(means) if means else torch.zeros(0)), kept


def nearest_rows(queries: torch.Tensor, fit: torch.Tensor, count: int, chunk: int = 1024,
                 themselves: bool = False) -> torch.Tensor:
    """(Q, count): each query row's nearest rows of fit (image_means() of images), nearest first,
    both standardised over fit. themselves: the queries are fit's own rows, each skipping itself.
    In chunks of queries: a tiled station may train on thousands of tiles, whose whole distance
    matrix would not fit in memory."""
    centre, spread = fit.mean(0), fit.std(0).clamp_min(1e-6)
    q, f = (queries - centre) / spread, (fit - centre) / spread
    out = []
    for start in range(0, len(q), chunk):
        d = torch.cdist(q[start : start + chunk], f)
        if themselves:
            rows = torch.arange(len(d))
            d[rows, rows + start] = float("inf")
        out.append(d.topk(min(count, len(f) - themselves), largest=False).indices)
    return torch.cat(out)


def nearest_training_normals(model: KMDGANGenerator, fit_means: torch.Tensor, holdout, size: int,
                             count: int = MAX_HELD_OUT_TWINS) -> dict:
    """{held-out sample: indices of its count nearest training normals among the bank's owners,
    nearest first}, by image_means() (fit_means: the training normals'), standardised over the
    training normals. Where one part was imaged more than once (Magnetic Tile images each tile under
    six exp folders; a commissioning run may cycle the same good parts), those neighbours are mostly
    its twins."""
    held, names = image_means_of(model, holdout, size)
    if not names or not len(fit_means):
        return {}
    return dict(zip(names, nearest_rows(held, fit_means, count).tolist()))


@dataclass
class Prepared:
    """Everything training needs that does not depend on the trainable network: shareable between
    runs on the same split (the ablation benchmark trains every variant from one)."""

    normals: Pool
    few: Pool
    banks: Banks
    holdout: list
    seconds: float
    # each held-out normal's nearest training normals, nearest first (nearest_training_normals)
    holdout_nearest: dict = field(default_factory=dict)
    # each training normal's image_means(), from which training_owners finds its nearest others
    normals_means: torch.Tensor | None = None

    def training_owners(self, count: int) -> torch.Tensor:
        """(N, 1 + k): the bank owners each training normal is matched without in training, its own
        image first, then its k nearest other training normals (the twins a new part lacks): k = count,
        or at most half of the others where there are few (11 or more training normals take 5)."""
        own = torch.arange(len(self.normals.images))[:, None]
        if not count:
            return own
        if not 1 <= count <= MAX_HELD_OUT_TWINS or self.normals_means is None:
            raise ValueError(f"training_twins {count}: between 0 and {MAX_HELD_OUT_TWINS}, with memory matching on")
        # a station with few normals keeps at least half of the others in each one's memory: leaving
        # them all out would leave no memory to match, and a twin is rarely more than that
        fewer = min(count, (len(own) - 1) // 2)
        if fewer < count:
            log.info("training_twins %d: only %d training normals, so each is matched without its %d nearest "
                     "others (half of the others stay in its memory)", count, len(own), fewer)
        if not fewer:
            return own
        return torch.cat([own, nearest_rows(self.normals_means, self.normals_means, fewer, themselves=True)], 1)

    def training_normals(self, model: KMDGANGenerator, owners: torch.Tensor) -> Pool:
        """The training normals' pool with each matched without its row of owners (training_owners)."""
        if owners.shape[1] == 1:  # its own image alone: as prepared
            return self.normals
        n = self.normals
        return Pool(n.images, n.masks, n.feats, nearest_memories(model, n.feats, self.banks, owners))

    def leave_out(self, count: int = 1) -> tuple[list[torch.Tensor], dict]:
        """calibrate_scores' leave_out: each held-out normal scored without its count nearest
        training normals."""
        if not 1 <= count <= MAX_HELD_OUT_TWINS:
            raise ValueError(f"held_out_twins {count}: between 1 and {MAX_HELD_OUT_TWINS}")
        return self.banks.owners, {s: n[:count] for s, n in self.holdout_nearest.items()}


def prepare(split: Split, cfg: KMDGANModelConfig, seed: int = 0, progress: bool = True) -> Prepared:
    started = time.perf_counter()
    size = cfg.input_size
    model = generator_for(cfg)
    fit_part, holdout = split_holdout(split.train_normal)
    images, _ = read_all(fit_part, size)
    if len(images) < 2:
        raise UserError("training needs at least 2 readable training normals")
    few_images, few_masks = flips(*read_all(split.few_shot, size))
    feats = features_of(model, images, progress, "features")
    banks = build_banks(model, feats, cfg.bank_size, seed, cfg.sampler) if model.matched else Banks([], [])
    matched = banks if model.matched else None
    normals = build_pool(model, images, np.zeros(images.shape[:3], bool), matched, torch.arange(len(images)),
                         progress, "", feats=feats)
    if len(few_images):
        few = build_pool(model, few_images, few_masks, matched, torch.full((len(few_images),), -1),
                         progress, "few-shot")  # -1: not a bank image, nothing to leave out
    else:  # a new product has no labelled defect yet: synthetic anomalies alone
        log.warning("no readable real defect samples: training on synthetic anomalies alone; escapes cannot "
                    "be estimated until labelled defects are added")
        few = Pool(few_images, few_masks, [f[:0] for f in normals.feats], [m[:0] for m in normals.memories])
    means = image_means(feats) if model.matched else None
    nearest = nearest_training_normals(model, means, holdout, size) if model.matched else {}
    return Prepared(normals, few, banks, holdout, time.perf_counter() - started, nearest, means)
