"""A small product image set the project makes itself: the embedded default for demos and tests.

A brushed-metal part with a bored hole, lit slightly differently from part to part; defects are
scratches, pits and cracks, each with its exact mask. Written in the folder layout.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEFECT_TYPES = ("scratch", "pit", "crack")


def make_part(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """One normal part, uint8 grayscale; size: a side, or (height, width)."""
    h, w = (size, size) if isinstance(size, int) else size
    grain = rng.normal(0, 1, (h, w)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), sigmaX=w / 16, sigmaY=0.6)  # brushed along x
    grain = grain / (grain.std() + 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shading = 10 * (xx / w - 0.5) * rng.uniform(-1, 1) + rng.uniform(-8, 8)
    part = 150 + 9 * grain + shading + rng.normal(0, 2, (h, w))
    cx, cy = w / 2 + rng.uniform(-3, 3), h / 2 + rng.uniform(-3, 3)
    r = np.hypot(xx - cx, yy - cy)
    radius = min(h, w) * 0.16
    part = np.where(r < radius, 60 + 6 * grain, part)  # the hole
    part = np.where(np.abs(r - radius) < 2.0, 205, part)  # its chamfer catches the light
    return np.clip(part, 0, 255).astype(np.uint8)


def _spot(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(x, y) away from the border; on a square part the same draws as ever (the demo's images)."""
    h, w = shape
    if h == w:
        return rng.integers(int(h * 0.08), int(h * 0.92), 2)
    return np.array([rng.integers(int(w * 0.08), int(w * 0.92)), rng.integers(int(h * 0.08), int(h * 0.92))])


def draw_defect(part: np.ndarray, kind: str, rng: np.random.Generator,
                extent: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A defect and its exact mask, sized for a part of side extent (default: this part's side), so
    that a large frame can carry defects of a few pixels."""
    size = extent or part.shape[0]
    far = np.array([part.shape[1] - 1, part.shape[0] - 1])  # (x, y) bounds
    mask = np.zeros_like(part)
    if kind == "scratch":
        p0 = _spot(rng, part.shape)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.15, 0.35) * size
        p1 = np.clip(p0 + length * np.array([np.cos(angle), np.sin(angle)]), 0, far).astype(int)
        cv2.line(mask, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 255, int(rng.integers(2, 4)))
        value = 235
    elif kind == "pit":
        centre = tuple(int(v) for v in _spot(rng, part.shape))
        axes = tuple(int(v) for v in rng.integers(3, max(4, size // 28), 2))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        value = 70
    else:  # crack: a jagged random walk
        point = _spot(rng, part.shape).astype(float)
        step = 6 if extent is None else max(2, round(3 * extent / 128))  # with extent: cracks of <= 40 px
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(8, 16))):
            heading += rng.uniform(-0.7, 0.7)
            nxt = np.clip(point + step * np.array([np.cos(heading), np.sin(heading)]), 0, far)
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


def write_large_frame_set(root: Path, normals: int = 30, per_defect: int = 4, width: int = 1280, height: int = 960,
                          extent: int = 128, seed: int = 0) -> Path:
    """Frames of width x height carrying defects sized as on a 128 px part (pits of 7 px, scratches
    and cracks of 19 to 46 px across), with exact masks, in the folder layout: for developing
    and testing inspection in tiles, where resizing the frame to the model input loses them."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "good").mkdir(parents=True, exist_ok=True)
    for i in range(normals):
        cv2.imwrite(str(root / "good" / f"frame_{i:04d}.png"), make_part(rng, (height, width)))
    for kind in DEFECT_TYPES:
        (root / kind).mkdir(exist_ok=True)
        (root / "masks" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_defect):
            image, mask = draw_defect(make_part(rng, (height, width)), kind, rng, extent)
            cv2.imwrite(str(root / kind / f"{kind}_{i:04d}.png"), image)
            cv2.imwrite(str(root / "masks" / kind / f"{kind}_{i:04d}.png"), mask.astype(np.uint8) * 255)
    return root
