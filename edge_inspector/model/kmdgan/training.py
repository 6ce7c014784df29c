"""Training KMDGAN: normals, synthetic anomalies and at most 10 real anomalies (the few-shot part).

What never changes is computed once (pool.prepare). Each iteration then mixes cached normals,
synthetic anomalies pasted onto normals (their features recomputed) and augmented real anomalies.
The operating threshold comes from held-out training normals, never from the test part
(score_calibration).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_inspector.config import KMDGANModelConfig
from edge_inspector.data.sample import Split
from edge_inspector.data.synthetic_anomaly import make_anomaly, paste_defect, procedural_texture
from edge_inspector.errors import UserError
from edge_inspector.model.kmdgan.artefact import LoadedModel, load_artefact, save_artefact
from edge_inspector.model.kmdgan.losses import adversarial_loss, dice_loss, focal_loss, image_dice_loss, tversky_loss
from edge_inspector.model.kmdgan.modules import PatchDiscriminator
from edge_inspector.model.kmdgan.network import STRIDES, KMDGANGenerator, generator_for
from edge_inspector.model.kmdgan.pixel_threshold import choose_pixel_threshold
from edge_inspector.model.kmdgan.pool import Banks, Pool, Prepared, as_tensor, build_pool, prepare, set_distance_scale
from edge_inspector.model.kmdgan.score_calibration import calibrate_scores

log = logging.getLogger(__name__)

PROFILES = {
    # fast: a 2-core CPU in about 15 minutes (the most that fits; on Magnetic Tile's validation
    # 1000 beat 500, docs/benchmarks.md); full: a GPU
    "fast": {"iterations": 1000, "batch_size": 8},
    "full": {"iterations": 4000, "batch_size": 16},
}
LR, D_LR = 2e-3, 2e-4
CHECKPOINT_EVERY = 50  # iterations
TEXTURE_POOL = 16
# with hard_normals, a normal is drawn in proportion to its last highest mask probability plus this
# floor: a normal the mask leaves empty is still drawn now and then, and every one starts at 1
PEAK_FLOOR = 0.05
# the trainable part in NHWC: oneDNN's convolutions (and their backward, most of a step) run about
# 1.25x faster on this CPU than in NCHW (tools/bench_training.py); the artefact is written in NCHW
TRAIN_LAYOUT = torch.channels_last


class BatchMaker:
    """Mixes cached normals, cached real anomalies (flipped) and fresh synthetic anomalies."""

    def __init__(self, model: KMDGANGenerator, normals: Pool, owners: torch.Tensor, few: Pool, banks: Banks,
                 batch_size: int, rng: np.random.Generator, copy_paste: float = 0.0,
                 kinds: tuple[str, ...] = ("texture",), hard_normals: float = 0.0):
        self.model, self.normals, self.few, self.banks, self.rng = model, normals, few, banks, rng
        # hard_normals: the share of a batch's normals drawn by their last mask response (record()),
        # the good images the mask fires on most; the rest uniformly, as without it
        self.hard = hard_normals
        self.peaks = np.ones(len(normals.images)) if hard_normals else None
        self.drawn_normals = np.zeros(0, int)
        # (N, K): the bank owners an anomaly drawn on normal j is matched without (Prepared.training_owners)
        self.owners = owners
        self.copy_paste = copy_paste if len(few.images) else 0.0  # share of pasted real defects
        self.kinds = tuple(kinds)
        self.n_few = min(2 if batch_size >= 4 else 1, len(few.images))
        self.n_syn = (batch_size - self.n_few) // 2
        self.n_normal = batch_size - self.n_few - self.n_syn
        size = normals.images.shape[1]
        self.textures = [procedural_texture((size, size), rng) for _ in range(TEXTURE_POOL)]

    def _synthetic(self) -> Pool:
        rng, n = self.rng, len(self.normals.images)
        images, masks, owners = [], [], []
        for j in rng.choice(n, self.n_syn):
            if self.copy_paste and rng.random() < self.copy_paste:
                k = int(rng.integers(len(self.few.images)))
                image, mask = paste_defect(self.normals.images[j], self.few.images[k], self.few.masks[k], rng)
                if mask.any():
                    images.append(image)
                    masks.append(mask)
                    owners.append(self.owners[j])
                    continue
            if rng.random() < 0.5:
                source = self.normals.images[rng.integers(n)]
            else:
                source = self.textures[rng.integers(TEXTURE_POOL)]
            # one kind draws nothing more from rng: the texture-only default trains as it did
            kind = self.kinds[0] if len(self.kinds) == 1 else self.kinds[int(rng.integers(len(self.kinds)))]
            image, mask = make_anomaly(kind, self.normals.images[j], rng, source=source)
            images.append(image)
            masks.append(mask)
            owners.append(self.owners[j])  # drawn on normal j: j (and its twins) must not be found in the bank
        return build_pool(self.model, np.stack(images), np.stack(masks), self.banks if self.model.matched else None,
                          torch.stack(owners), False, "")

    def _normal_indices(self) -> np.ndarray:
        n = len(self.normals.images)
        if self.peaks is None:
            return self.rng.choice(n, self.n_normal)
        hard = int(round(self.hard * self.n_normal))
        return np.concatenate([self.rng.choice(n, hard, p=self.peaks / self.peaks.sum()),
                               self.rng.choice(n, self.n_normal - hard)])

    def record(self, prob: torch.Tensor) -> None:
        """After a step on the last batch: its normals' highest mask probabilities (they come first)."""
        if self.peaks is not None and len(self.drawn_normals):
            peaks = prob[:len(self.drawn_normals)].detach().float().flatten(1).amax(1).cpu().numpy()
            self.peaks[self.drawn_normals] = peaks + PEAK_FLOOR

    def __call__(self) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        self.drawn_normals = self._normal_indices()
        parts = [(self.normals, self.drawn_normals)]
        if self.n_few:
            parts.append((self.few, self.rng.choice(len(self.few.images), self.n_few, replace=False)))
        if self.n_syn:
            syn = self._synthetic()
            parts.append((syn, np.arange(self.n_syn)))
        image = torch.cat([as_tensor(p.images[i]) for p, i in parts])
        feats = [torch.cat([p.feats[k][torch.from_numpy(i)].float() for p, i in parts]) for k in range(len(STRIDES))]
        mems = [torch.cat([p.memories[k][torch.from_numpy(i)].float() for p, i in parts])
                for k in range(len(self.model.matched))]
        target = torch.from_numpy(np.concatenate([p.masks[i] for p, i in parts]).astype(np.float32))[:, None]
        return image, feats, mems, target


class Optimisation:
    """The generator's and discriminator's optimisers and schedule: one step, a checkpoint, a resume."""

    def __init__(self, model: KMDGANGenerator, cfg: KMDGANModelConfig, iterations: int, device: str,
                 layout: torch.memory_format = TRAIN_LAYOUT):
        self.model, self.adversarial_weight = model, cfg.adversarial_weight
        self.image_dice = cfg.dice == "image"
        self.beta = cfg.tversky_beta
        self.disc = PatchDiscriminator().to(device, memory_format=layout) if cfg.modules.adversarial else None
        trainable = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
        self.opt_g = torch.optim.AdamW(trainable, lr=LR, weight_decay=1e-4)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt_g, max_lr=LR, total_steps=iterations,
                                                         pct_start=0.1)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=D_LR, betas=(0.5, 0.999)) if self.disc else None

    def step(self, image, feats, mems, target) -> tuple[float, float]:
        """One generator step (and one discriminator step); (segmentation loss, total loss)."""
        logits, _ = self.model.decode(image, feats, mems)
        prob = torch.sigmoid(logits)
        self.last_prob = prob.detach()  # BatchMaker.record (hard_normals)
        # beta 0.5 is the soft Dice: its own formula, so that 0.5 trains exactly as the Dice always did
        overlap = dice_loss(prob, target) if self.beta == 0.5 else tversky_loss(prob, target, self.beta)
        seg = focal_loss(logits, target) + overlap
        if self.image_dice:  # the batch's term stays: it is what keeps the normals' masks empty
            seg = seg + image_dice_loss(prob, target)
        loss = seg
        if self.disc is not None:
            loss = loss + self.adversarial_weight * adversarial_loss(self.disc(image, prob), real=True)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.sched.step()
        if self.disc is not None:
            d_loss = (adversarial_loss(self.disc(image, target), True)
                      + adversarial_loss(self.disc(image, prob.detach()), False))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        return seg.item(), loss.item()

    def save(self, path: Path, it: int, rng: np.random.Generator, peaks: np.ndarray | None = None) -> None:
        d = self.disc
        state = {"iteration": it, "generator": self.model.state_dict(), "discriminator": d.state_dict() if d else {},
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict() if d else {},
                 "sched": self.sched.state_dict(), "torch_rng": torch.get_rng_state(),
                 "numpy_rng": rng.bit_generator.state}
        if peaks is not None:  # hard_normals: what the next batches are drawn by
            state["normal_peaks"] = torch.from_numpy(peaks)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    def restore(self, path: Path, rng: np.random.Generator, maker: BatchMaker | None = None) -> int:
        """Load a checkpoint (tensors and plain types only); the iteration to continue from."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if maker is not None and maker.peaks is not None and "normal_peaks" in state:
            maker.peaks = state["normal_peaks"].numpy().copy()
        self.model.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched.load_state_dict(state["sched"])
        if self.disc:
            self.disc.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        return int(state["iteration"])


def _new_generator(cfg: KMDGANModelConfig) -> KMDGANGenerator:
    return generator_for(cfg)


def training_parts(model: KMDGANGenerator, prepared: Prepared, banks: Banks, cfg: KMDGANModelConfig,
                   iterations: int, batch_size: int, rng: np.random.Generator, device: str = "cpu",
                   layout: torch.memory_format = TRAIN_LAYOUT) -> tuple[Optimisation, BatchMaker]:
    """What a training run steps with: the optimiser (the model moved to device, in layout) and the
    batch maker, with the memory distances normalised on the memories the network trains on.
    train_kmdgan and tools/bench_training.py both build them here, so they train alike."""
    # with training_twins, the normals (and anomalies drawn on them) see the memory a new part sees
    if cfg.training_twins and not model.matched:
        log.warning("model.training_twins %d ignored: memory matching is off, so no memory to leave "
                    "training normals out of", cfg.training_twins)
    owners = prepared.training_owners(cfg.training_twins if model.matched else 0)
    normals = prepared.training_normals(model, owners)
    set_distance_scale(model, normals)
    # batches (synthetic anomalies, their frozen features and memory search) are made on the CPU by
    # a twin without trainable state in use; the network being trained lives on the device
    maker = model if torch.device(device).type == "cpu" else _new_generator(cfg)
    model.to(device, memory_format=layout)
    optimisation = Optimisation(model, cfg, iterations, device, layout)
    return optimisation, BatchMaker(maker, normals, owners, prepared.few, banks, batch_size, rng, cfg.copy_paste,
                                    tuple(cfg.synthetic_kinds), cfg.hard_normals)


def train_kmdgan(split: Split, cfg: KMDGANModelConfig, out: Path, target_false_reject_rate: float = 0.01,
                 seed: int = 0, resume: bool = False, progress: bool = True,
                 prepared: Prepared | None = None, device: str = "cpu") -> LoadedModel:
    """Train and write the artefact to out. prepared: from prepare() on the same split, config and
    seed (with memory matching on, it serves variants with it off too). device: where the
    trainable part runs (e.g. cuda:0 for the full profile); batches are made on the CPU."""
    on_cpu = torch.device(device).type == "cpu"
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"training device {device} requested, but this torch build or machine has no CUDA")
    Path(out).parent.mkdir(parents=True, exist_ok=True)  # the checkpoint is written beside it
    prepared = prepared or prepare(split, cfg, seed, progress)
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    iterations = cfg.iterations or PROFILES[cfg.profile]["iterations"]
    batch_size = cfg.batch_size or PROFILES[cfg.profile]["batch_size"]
    model = _new_generator(cfg)
    banks = prepared.banks if model.matched else Banks([], [])
    if model.matched and len(banks.banks) != len(model.matched):
        raise ValueError("prepared data has no memory banks for this model's matched strides")
    # made before a resume restores the random state, as in the uninterrupted run
    optimisation, make_batch = training_parts(model, prepared, banks, cfg, iterations, batch_size, rng, device)
    checkpoint = Path(str(out) + ".ckpt")
    start_it = 0
    if resume and checkpoint.is_file():
        start_it = optimisation.restore(checkpoint, rng, make_batch)
        log.info("resumed from %s at iteration %d", checkpoint, start_it)
    model.train()
    bar = tqdm(range(start_it, iterations), desc="train", disable=not progress, initial=start_it, total=iterations)
    for it in bar:
        batch = make_batch()
        if not on_cpu:
            batch = (batch[0].to(device), [f.to(device) for f in batch[1]], [m.to(device) for m in batch[2]],
                     batch[3].to(device))
        seg, loss = optimisation.step(*batch)
        make_batch.record(optimisation.last_prob)
        bar.set_postfix(seg=f"{seg:.3f}", loss=f"{loss:.3f}")
        if (it + 1) % CHECKPOINT_EVERY == 0 and it + 1 < iterations:
            optimisation.save(checkpoint, it + 1, rng, make_batch.peaks)
    model.to("cpu", memory_format=torch.contiguous_format).eval()  # safetensors writes contiguous tensors
    threshold = calibrate_scores(model, banks.banks, prepared.holdout, split.few_shot, cfg.input_size,
                                 target_false_reject_rate,
                                 prepared.leave_out(cfg.held_out_twins) if cfg.held_out_twin == "left_out" else None)
    pixel_threshold, pixel_extent, pixel_validation = choose_pixel_threshold(
        model, banks.banks, prepared.holdout, split.few_shot, cfg.input_size, seed, defects=cfg.cut_defects,
        rule=cfg.cut_rule, fixed=cfg.fixed_cut)
    training = {"profile": cfg.profile, "iterations": iterations, "batch_size": batch_size, "seed": seed,
                "train_normals": len(prepared.normals.images), "few_shot": len(split.few_shot),
                "held_out_normals": len(prepared.holdout), "bank_size": cfg.bank_size, "sampler": cfg.sampler,
                "adversarial": cfg.modules.adversarial, "adversarial_weight": cfg.adversarial_weight,
                "copy_paste": cfg.copy_paste, "synthetic_kinds": list(cfg.synthetic_kinds),
                "dice": cfg.dice, "tversky_beta": cfg.tversky_beta, "cut_defects": cfg.cut_defects,
                "cut_rule": cfg.cut_rule, "fixed_cut": list(cfg.fixed_cut) if cfg.cut_rule == "fixed" else None,
                "held_out_twin": cfg.held_out_twin,
                "held_out_twins": cfg.held_out_twins, "training_twins": cfg.training_twins,
                "hard_normals": cfg.hard_normals,
                # what a standalone run costs: preparation (maybe shared) plus this run's own training
                "seconds": round(time.perf_counter() - started + prepared.seconds, 1),
                "preparation_seconds": round(prepared.seconds, 1),
                "distance_score_validation_auroc": getattr(model, "validation", {}),
                "threshold_held_out": getattr(model, "threshold_record", {}),
                "pixel_threshold_validation": pixel_validation}
    save_artefact(out, model, banks.banks, threshold, cfg.input_size, training, pixel_threshold, pixel_extent)
    checkpoint.unlink(missing_ok=True)
    log.info("model written to %s (threshold %.4f, %.0f s)", out, threshold, training["seconds"])
    return load_artefact(out)
