"""Training KMDGAN: normals, synthetic anomalies and at most 10 real anomalies (the few-shot part).

What never changes is computed once: the frozen backbone features of the training normals, the
memory banks, and each normal's nearest memory features (its own image left out of the search).
Each iteration then mixes cached normals, synthetic anomalies pasted onto normals (their features
recomputed) and augmented real anomalies. The operating threshold comes from held-out training
normals, never from the test part.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_inspector.artefact import LoadedModel, load_artefact, save_artefact
from edge_inspector.baseline import choose_score_mode
from edge_inspector.config import KMDGANModelConfig
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.sample import Split
from edge_inspector.data.synthetic_anomaly import add_anomaly, procedural_texture
from edge_inspector.errors import UserError
from edge_inspector.imageio import from_tensor_layout, to_tensor_layout
from edge_inspector.losses import adversarial_loss, dice_loss, focal_loss
from edge_inspector.model.backbone import EfficientNetLite0Features
from edge_inspector.model.kmdgan import STRIDES, KMDGANArchitecture, KMDGANGenerator
from edge_inspector.model.kmdgan_modules import PatchDiscriminator
from edge_inspector.model.memory_bank import CoresetSampler, RandomSampler
from edge_inspector.threshold import split_holdout, threshold_from_normals

log = logging.getLogger(__name__)

PROFILES = {
    # fast: a 2-core CPU in minutes; full: a GPU
    "fast": {"iterations": 500, "batch_size": 8},
    "full": {"iterations": 4000, "batch_size": 16},
}
LR, D_LR = 2e-3, 2e-4
CHECKPOINT_EVERY = 50  # iterations
TEXTURE_POOL = 16


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


def architecture_of(cfg: KMDGANModelConfig) -> KMDGANArchitecture:
    m = cfg.modules
    return KMDGANArchitecture(match_strides=sorted(cfg.match_strides), memory_matching=m.memory_matching,
                              cross_scale_fusion=m.cross_scale_fusion, map_modulation=m.map_modulation,
                              edge_context=m.edge_context, map_blend=cfg.map_blend,
                              position_sides=[cfg.input_size // s for s in sorted(cfg.match_strides)]
                              if cfg.position_profile and m.memory_matching else [])


def _read_all(samples, size: int) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for batch in iter_batches(samples, size, 16):
        images.append(from_tensor_layout(batch.images))
        masks.append(batch.masks)
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), bool)
    return np.concatenate(images), np.concatenate(masks)


def _tensor(images_bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(to_tensor_layout(list(images_bgr)))


def _features(model: KMDGANGenerator, images: np.ndarray, progress: bool, desc: str) -> list[torch.Tensor]:
    feats: list[list[torch.Tensor]] = [[] for _ in STRIDES]
    for start in tqdm(range(0, len(images), 16), desc=desc, disable=not progress):
        for i, f in enumerate(model.features(_tensor(images[start : start + 16]))):
            feats[i].append(f.half())
    return [torch.cat(f) for f in feats]


def build_banks(model: KMDGANGenerator, feats: list[torch.Tensor], bank_size: int, seed: int,
                sampler: str = "random") -> Banks:
    banks, owners = [], []
    for s in model.matched:
        f = feats[STRIDES.index(s)]
        n, c, h, w = f.shape
        flat = f.permute(0, 2, 3, 1).reshape(-1, c)
        keep = (CoresetSampler(bank_size, seed).indices(flat) if sampler == "coreset"
                else RandomSampler(bank_size, seed).indices(flat.shape[0]))
        banks.append(flat[keep].float().contiguous())
        owners.append(keep // (h * w))
    return Banks(banks, owners)


def _memories(model: KMDGANGenerator, feats: list[torch.Tensor], banks: Banks, item_owners: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for start in range(0, len(item_owners), 16):
        items = slice(start, start + 16)
        out.append([m.half() for m in model.match([f[items].float() for f in feats], banks.banks,
                                                  exclude=(banks.owners, item_owners[items]))])
    return [torch.cat([m[i] for m in out]) for i in range(len(model.matched))] if model.matched else []


def build_pool(model: KMDGANGenerator, images: np.ndarray, masks: np.ndarray, banks: Banks | None,
               item_owners: torch.Tensor, progress: bool, desc: str, feats: list[torch.Tensor] | None = None) -> Pool:
    feats = feats if feats is not None else _features(model, images, progress, desc)
    memories = _memories(model, feats, banks, item_owners) if banks is not None else []
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


class BatchMaker:
    """Mixes cached normals, cached real anomalies (flipped) and fresh synthetic anomalies."""

    def __init__(self, model: KMDGANGenerator, normals: Pool, few: Pool, banks: Banks, batch_size: int,
                 rng: np.random.Generator):
        self.model, self.normals, self.few, self.banks, self.rng = model, normals, few, banks, rng
        self.n_few = min(2 if batch_size >= 4 else 1, len(few.images))
        self.n_syn = (batch_size - self.n_few) // 2
        self.n_normal = batch_size - self.n_few - self.n_syn
        size = normals.images.shape[1]
        self.textures = [procedural_texture((size, size), rng) for _ in range(TEXTURE_POOL)]

    def _synthetic(self) -> Pool:
        rng, n = self.rng, len(self.normals.images)
        images, masks, owners = [], [], []
        for j in rng.choice(n, self.n_syn):
            if rng.random() < 0.5:
                source = self.normals.images[rng.integers(n)]
            else:
                source = self.textures[rng.integers(TEXTURE_POOL)]
            image, mask = add_anomaly(self.normals.images[j], rng, source=source)
            images.append(image)
            masks.append(mask)
            owners.append(int(j))  # pasted onto normal j: j must not find itself in the bank
        return build_pool(self.model, np.stack(images), np.stack(masks), self.banks if self.model.matched else None,
                          torch.tensor(owners), False, "")

    def __call__(self) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        parts = [(self.normals, self.rng.choice(len(self.normals.images), self.n_normal))]
        if self.n_few:
            parts.append((self.few, self.rng.choice(len(self.few.images), self.n_few, replace=False)))
        if self.n_syn:
            syn = self._synthetic()
            parts.append((syn, np.arange(self.n_syn)))
        image = torch.cat([_tensor(p.images[i]) for p, i in parts])
        feats = [torch.cat([p.feats[k][torch.from_numpy(i)].float() for p, i in parts]) for k in range(len(STRIDES))]
        mems = [torch.cat([p.memories[k][torch.from_numpy(i)].float() for p, i in parts])
                for k in range(len(self.model.matched))]
        target = torch.from_numpy(np.concatenate([p.masks[i] for p, i in parts]).astype(np.float32))[:, None]
        return image, feats, mems, target


def _save_checkpoint(path: Path, it: int, model, disc, opt_g, opt_d, sched, rng: np.random.Generator) -> None:
    state = {"iteration": it, "generator": model.state_dict(), "discriminator": disc.state_dict() if disc else {},
             "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict() if opt_d else {}, "sched": sched.state_dict(),
             "torch_rng": torch.get_rng_state(), "numpy_rng": rng.bit_generator.state}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


@dataclass
class Prepared:
    """Everything training needs that does not depend on the trainable network: shareable between
    runs on the same split (the ablation benchmark trains every variant from one)."""

    normals: Pool
    few: Pool
    banks: Banks
    holdout: list
    seconds: float


def prepare(split: Split, cfg: KMDGANModelConfig, seed: int = 0, progress: bool = True) -> Prepared:
    started = time.perf_counter()
    size = cfg.input_size
    model = KMDGANGenerator(architecture_of(cfg), EfficientNetLite0Features(STRIDES, cfg.backbone.weights))
    fit_part, holdout = split_holdout(split.train_normal)
    images, _ = _read_all(fit_part, size)
    if len(images) < 2:
        raise UserError("training needs at least 2 readable training normals")
    few_images, few_masks = flips(*_read_all(split.few_shot, size))
    feats = _features(model, images, progress, "features")
    banks = build_banks(model, feats, cfg.bank_size, seed, cfg.sampler) if model.matched else Banks([], [])
    matched = banks if model.matched else None
    normals = build_pool(model, images, np.zeros(images.shape[:3], bool), matched, torch.arange(len(images)),
                         progress, "", feats=feats)
    few = build_pool(model, few_images, few_masks, matched, torch.full((len(few_images),), -1),
                     progress, "few-shot")  # -1: not a bank image, nothing to leave out
    return Prepared(normals, few, banks, holdout, time.perf_counter() - started)


def train_kmdgan(split: Split, cfg: KMDGANModelConfig, out: Path, target_false_reject_rate: float = 0.01,
                 seed: int = 0, resume: bool = False, progress: bool = True,
                 prepared: Prepared | None = None, device: str = "cpu") -> LoadedModel:
    """Train and write the artefact to out. prepared: from prepare() on the same split, config and
    seed (with memory matching on, it serves variants with it off too). device: where the
    trainable part runs (e.g. cuda:0 for the full profile); batches are made on the CPU."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"training device {device} requested, but this torch build or machine has no CUDA")
    Path(out).parent.mkdir(parents=True, exist_ok=True)  # the checkpoint is written beside it
    if prepared is None:
        prepared = prepare(split, cfg, seed, progress)
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    profile = PROFILES[cfg.profile]
    iterations = cfg.iterations or profile["iterations"]
    batch_size = cfg.batch_size or profile["batch_size"]
    size = cfg.input_size
    model = KMDGANGenerator(architecture_of(cfg), EfficientNetLite0Features(STRIDES, cfg.backbone.weights))
    normals, few, banks, holdout = prepared.normals, prepared.few, prepared.banks, prepared.holdout
    if model.matched and len(banks.banks) != len(model.matched):
        raise ValueError("prepared data has no memory banks for this model's matched strides")
    if not model.matched:
        banks = Banks([], [])
    set_distance_scale(model, normals)
    # batches (synthetic anomalies, their frozen features and memory search) are made on the CPU by
    # a twin without trainable state in use; the network being trained lives on the device
    maker = model if torch.device(device).type == "cpu" else KMDGANGenerator(
        architecture_of(cfg), EfficientNetLite0Features(STRIDES, cfg.backbone.weights))
    model.to(device)
    disc = PatchDiscriminator().to(device) if cfg.modules.adversarial else None
    trainable = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt_g = torch.optim.AdamW(trainable, lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt_g, max_lr=LR, total_steps=iterations, pct_start=0.1)
    opt_d = torch.optim.Adam(disc.parameters(), lr=D_LR, betas=(0.5, 0.999)) if disc else None
    checkpoint = Path(str(out) + ".ckpt")
    # made before a resume restores the random state, as in the uninterrupted run
    make_batch = BatchMaker(maker, normals, few, banks, batch_size, rng)
    start_it = 0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        sched.load_state_dict(state["sched"])
        if disc:
            disc.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        start_it = int(state["iteration"])
        log.info("resumed from %s at iteration %d", checkpoint, start_it)
    model.train()
    bar = tqdm(range(start_it, iterations), desc="train", disable=not progress, initial=start_it, total=iterations)
    for it in bar:
        image, feats, mems, target = make_batch()
        if device != "cpu":
            image, target = image.to(device), target.to(device)
            feats, mems = [f.to(device) for f in feats], [m.to(device) for m in mems]
        logits, _ = model.decode(image, feats, mems)
        prob = torch.sigmoid(logits)
        seg = focal_loss(logits, target) + dice_loss(prob, target)
        loss = seg
        if disc is not None:
            loss = loss + cfg.adversarial_weight * adversarial_loss(disc(image, prob), real=True)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        sched.step()
        if disc is not None:
            d_loss = adversarial_loss(disc(image, target), True) + adversarial_loss(disc(image, prob.detach()), False)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        bar.set_postfix(seg=f"{seg.item():.3f}", loss=f"{loss.item():.3f}")
        if (it + 1) % CHECKPOINT_EVERY == 0 and it + 1 < iterations:
            _save_checkpoint(checkpoint, it + 1, model, disc, opt_g, opt_d, sched, rng)
    model.cpu().eval()
    threshold = calibrate_scores(model, banks.banks, holdout, split.few_shot, size, target_false_reject_rate)
    training = {"profile": cfg.profile, "iterations": iterations, "batch_size": batch_size, "seed": seed,
                "train_normals": len(normals.images), "few_shot": len(split.few_shot), "held_out_normals": len(holdout),
                "bank_size": cfg.bank_size, "sampler": cfg.sampler, "adversarial": cfg.modules.adversarial,
                "adversarial_weight": cfg.adversarial_weight,
                # what a standalone run costs: preparation (maybe shared) plus this run's own training
                "seconds": round(time.perf_counter() - started + prepared.seconds, 1),
                "preparation_seconds": round(prepared.seconds, 1),
                "distance_score_validation_auroc": getattr(model, "validation", {})}
    save_artefact(out, model, banks.banks, threshold, size, training)
    checkpoint.unlink(missing_ok=True)
    log.info("model written to %s (threshold %.4f, %.0f s)", out, threshold, training["seconds"])
    return load_artefact(out)


@torch.no_grad()
def _outputs(model: KMDGANGenerator, banks, samples, size: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mask probabilities (N, 1, H, W) and, per matched stride, distance maps (N, h*w)."""
    probs, dists = [], []
    for batch in iter_batches(samples, size, 8):
        image = torch.from_numpy(batch.images)
        feats = model.features(image)
        logits, distances = model.decode(image, feats, model.match(feats, banks))
        probs.append(torch.sigmoid(logits))
        dists.append([d.flatten(1) for d in distances])
    if not probs:
        return torch.zeros(0), []
    return torch.cat(probs), [torch.cat(per) for per in zip(*dists)]


MAP_NORMAL_QUANTILE = 0.999  # a held-out normal pixel reaches the blend's 0.5 once in a thousand


def set_map_levels(model: KMDGANGenerator, dists: list[torch.Tensor], size: int) -> None:
    """The map blend's centre and spread per stride, from held-out normals' upsampled distances."""
    for i, (stride, d) in enumerate(zip(model.matched, dists)):
        side = size // stride
        up = torch.nn.functional.interpolate(d.view(-1, 1, side, side), size=(size, size), mode="bilinear",
                                             align_corners=False).flatten()
        sample = up[torch.randperm(up.numel(), generator=torch.Generator().manual_seed(0))[:2_000_000]]
        model.map_center[i] = torch.quantile(sample, MAP_NORMAL_QUANTILE)
        model.map_scale[i] = sample.std().clamp_min(1e-6)


@torch.no_grad()
def calibrate_scores(model: KMDGANGenerator, banks, holdout, few_shot, size: int,
                     target_false_reject_rate: float) -> float:
    """Choose the memory-distance stride and aggregation (held-out normals vs the few-shot anomalies:
    the bank holds neither, so this part of the score is fairly validated), standardise the score
    parts on the held-out normals, and choose the threshold on them."""
    prob, dists = _outputs(model, banks, holdout, size)
    if not len(prob):
        raise UserError("no readable held-out training normals to choose the threshold from")
    if dists:
        _, few_dists = _outputs(model, banks, few_shot, size)
        candidates = {}
        for stride, dist, few in zip(model.matched, dists, few_dists or [None] * len(dists)):
            mode, aucs = choose_score_mode(dist, few)
            candidates[stride] = (aucs.get(mode, 0.0), mode, aucs)
        # the best separation wins; ties keep the finer stride (first in matched)
        stride = max(candidates, key=lambda s: candidates[s][0])
        model.arch.distance_stride, model.arch.distance_score = stride, candidates[stride][1]
        model.validation = {f"stride{s}": c[2] for s, c in candidates.items()}
        log.info("memory-distance score: stride %d, %s, chosen on training data (AUROC held-out normals "
                 "vs few-shot: %s)", stride, model.arch.distance_score, model.validation)
    if model.arch.map_blend and dists:
        set_map_levels(model, dists, size)
    parts = model.score_parts(prob, [d.view(len(prob), 1, -1) for d in dists])
    n = parts.shape[1]
    model.score_center[:n] = parts.median(0).values
    model.score_scale[:n] = parts.std(0).clamp_min(1e-6) if len(parts) > 1 else 1.0
    scores = ((parts - model.score_center[:n]) / model.score_scale[:n]).sum(1)
    return threshold_from_normals(scores.numpy(), target_false_reject_rate)
