"""A small product image set the project makes itself: the embedded default for demos and tests.

A brushed-metal part with a bored hole, lit slightly differently from part to part; defects are
scratches, pits and cracks, each with its exact mask. Written in the folder layout.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEFECT_TYPES = ("scratch", "pit", "crack")


def make_part(rng: np.random.Generator, size: int) -> np.ndarray:
    """One normal part, uint8 grayscale."""
    grain = rng.normal(0, 1, (size, size)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), sigmaX=size / 16, sigmaY=0.6)  # brushed along x
    grain = grain / (grain.std() + 1e-6)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shading = 10 * (xx / size - 0.5) * rng.uniform(-1, 1) + rng.uniform(-8, 8)
    part = 150 + 9 * grain + shading + rng.normal(0, 2, (size, size))
    cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
    r = np.hypot(xx - cx, yy - cy)
    part = np.where(r < size * 0.16, 60 + 6 * grain, part)  # the hole
    part = np.where(np.abs(r - size * 0.16) < 2.0, 205, part)  # its chamfer catches the light
    return np.clip(part, 0, 255).astype(np.uint8)


def draw_defect(part: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = part.shape[0]
    mask = np.zeros_like(part)
    lo, hi = int(size * 0.08), int(size * 0.92)
    if kind == "scratch":
        p0 = rng.integers(lo, hi, 2)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.15, 0.35) * size
        p1 = np.clip(p0 + length * np.array([np.cos(angle), np.sin(angle)]), 0, size - 1).astype(int)
        cv2.line(mask, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 255, int(rng.integers(2, 4)))
        value = 235
    elif kind == "pit":
        centre = tuple(int(v) for v in rng.integers(lo, hi, 2))
        axes = tuple(int(v) for v in rng.integers(3, max(4, size // 28), 2))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        value = 70
    else:  # crack: a jagged random walk
        point = rng.integers(lo, hi, 2).astype(float)
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(8, 16))):
            heading += rng.uniform(-0.7, 0.7)
            nxt = np.clip(point + 6 * np.array([np.cos(heading), np.sin(heading)]), 0, size - 1)
            cv2.line(mask, tuple(int(v) for v in point), tuple(int(v) for v in nxt), 255, 2)
            point = nxt
        value = 40
    m = mask > 0
    out = part.copy()
    out[m] = np.clip(0.3 * part[m] + 0.7 * value + rng.normal(0, 4, m.sum()), 0, 255).astype(np.uint8)
    return out, m


def write_product_set(root: Path, normals: int = 50, per_defect: int = 6, size: int = 256, seed: int = 0) -> Path:
    """Write the set in the folder layout (good/, <type>/, masks/<type>/) and return root."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "good").mkdir(parents=True, exist_ok=True)
    for i in range(normals):
        cv2.imwrite(str(root / "good" / f"part_{i:04d}.png"), make_part(rng, size))
    for kind in DEFECT_TYPES:
        (root / kind).mkdir(exist_ok=True)
        (root / "masks" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_defect):
            image, mask = draw_defect(make_part(rng, size), kind, rng)
            cv2.imwrite(str(root / kind / f"{kind}_{i:04d}.png"), image)
            cv2.imwrite(str(root / "masks" / kind / f"{kind}_{i:04d}.png"), mask.astype(np.uint8) * 255)
    return root
