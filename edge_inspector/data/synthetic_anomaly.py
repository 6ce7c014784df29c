"""Synthetic anomalies for training (DRAEM / MemSeg style), deterministic under a seed.

Kinds (`model.synthetic_kinds`):
- texture: a Perlin-noise mask, optionally kept within the part's foreground, filled from a
  texture source (another image, or a procedural texture) blended with factor beta in [0.15, 1];
- shading: the same kind of mask, the part's own surface made darker or brighter inside it with a
  soft edge (stains, uneven surfaces: low contrast, no new texture);
- line: a few thin random polylines, darker or brighter than the surface (scratches, cracks).
"""

from __future__ import annotations

import cv2
import numpy as np

BETA_RANGE = (0.15, 1.0)
KINDS = ("texture", "shading", "line")
SHADING_GAIN = (0.55, 0.85)  # darker inside the mask; brighter uses the reciprocal range


def perlin(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin noise in about [-1, 1] with the given number of lattice cells per axis."""
    h, w = shape
    ch, cw = cells
    angles = rng.uniform(0, 2 * np.pi, (ch + 1, cw + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], -1)
    y = np.linspace(0, ch, h, endpoint=False)
    x = np.linspace(0, cw, w, endpoint=False)
    yi, xi = np.floor(y).astype(int), np.floor(x).astype(int)
    yf, xf = (y - yi)[:, None], (x - xi)[None, :]

    def dot(dy: int, dx: int) -> np.ndarray:
        g = grads[yi[:, None] + dy, xi[None, :] + dx]
        return g[..., 0] * (yf - dy) + g[..., 1] * (xf - dx)

    fade = lambda t: t * t * t * (t * (t * 6 - 15) + 10)  # noqa: E731 - Perlin's quintic
    u, v = fade(xf), fade(yf)
    top = dot(0, 0) * (1 - u) + dot(0, 1) * u
    bottom = dot(1, 0) * (1 - u) + dot(1, 1) * u
    return np.sqrt(2) * (top * (1 - v) + bottom * v)


def perlin_mask(shape: tuple[int, int], rng: np.random.Generator, threshold: float = 0.5,
                foreground: np.ndarray | None = None, min_pixels: int = 16) -> np.ndarray:
    """A binary blob mask from thresholded Perlin noise at a random scale, within the foreground."""
    for _ in range(20):  # redraw where the blob misses the foreground
        cells = (2 ** int(rng.integers(0, 6)), 2 ** int(rng.integers(0, 6)))
        noise = perlin(shape, cells, rng)
        angle = float(rng.uniform(-90, 90))
        rot = cv2.getRotationMatrix2D((shape[1] / 2, shape[0] / 2), angle, 1.0)
        noise = cv2.warpAffine(noise.astype(np.float32), rot, (shape[1], shape[0]), borderMode=cv2.BORDER_REFLECT)
        mask = noise > threshold
        if foreground is not None:
            mask &= foreground
        if mask.sum() >= min_pixels:
            return mask
    return mask


def procedural_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random colourful texture (layered Perlin noise), uint8 BGR."""
    layers = []
    for _ in range(3):
        n = sum(perlin(shape, (2**o, 2**o), rng) / 2**o for o in range(1, 6))
        layers.append(n)
    tex = np.stack(layers, -1)
    tex = (tex - tex.min()) / (np.ptp(tex) + 1e-8)
    return (tex * 255).astype(np.uint8)


def shuffled_grid(source: np.ndarray, rng: np.random.Generator, grid: int = 8) -> np.ndarray:
    """The source image cut into grid x grid tiles and shuffled: texture without its structure."""
    h, w = source.shape[:2]
    th, tw = h // grid, w // grid
    tiles = [source[i * th : (i + 1) * th, j * tw : (j + 1) * tw] for i in range(grid) for j in range(grid)]
    order = rng.permutation(len(tiles))
    rows = [np.concatenate([tiles[order[i * grid + j]] for j in range(grid)], 1) for i in range(grid)]
    return cv2.resize(np.concatenate(rows, 0), (w, h), interpolation=cv2.INTER_NEAREST)


def add_anomaly(image: np.ndarray, rng: np.random.Generator, source: np.ndarray | None = None,
                foreground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paste a synthetic anomaly into a uint8 BGR image. Returns (new image, bool mask)."""
    h, w = image.shape[:2]
    mask = perlin_mask((h, w), rng, foreground=foreground)
    if source is None:
        texture = procedural_texture((h, w), rng)
    else:
        texture = shuffled_grid(cv2.resize(source, (w, h)), rng)
    if texture.ndim == 2:
        texture = cv2.cvtColor(texture, cv2.COLOR_GRAY2BGR)
    beta = float(rng.uniform(*BETA_RANGE))  # opacity of the texture inside the mask
    blended = (1 - beta) * image.astype(np.float32) + beta * texture.astype(np.float32)
    out = np.where(mask[..., None], blended, image.astype(np.float32))
    return np.clip(out, 0, 255).astype(np.uint8), mask


def add_shading(image: np.ndarray, rng: np.random.Generator, foreground: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The surface inside a Perlin mask made darker or brighter (gain in SHADING_GAIN or its
    reciprocal), the change fading over a few pixels at the edge; the mask is where it is at
    least half done."""
    h, w = image.shape[:2]
    mask = perlin_mask((h, w), rng, foreground=foreground)
    gain = float(rng.uniform(*SHADING_GAIN))
    if rng.random() < 0.5:
        gain = 1 / gain
    sigma = max(1.0, min(h, w) / 128)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    out = image.astype(np.float32) * (1 + (gain - 1) * soft)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8), (soft >= 0.5) & mask


def add_lines(image: np.ndarray, rng: np.random.Generator, foreground: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """1 to 3 thin random polylines (each 2 to 6 segments turning by up to 45 degrees), darker or
    brighter than the surface; thickness 1 to 3 px per 256 px of image side."""
    h, w = image.shape[:2]
    scale = min(h, w) / 256
    mask8 = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        point = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        heading = rng.uniform(0, 2 * np.pi)
        points = [point.copy()]
        for _ in range(int(rng.integers(2, 7))):
            heading += rng.uniform(-np.pi / 4, np.pi / 4)
            point = point + rng.uniform(0.04, 0.15) * min(h, w) * np.array([np.cos(heading), np.sin(heading)])
            points.append(point.copy())
        thickness = max(1, int(round(rng.uniform(1, 3) * scale)))
        cv2.polylines(mask8, [np.round(np.array(points)).astype(np.int32)], False, 1, thickness, cv2.LINE_8)
    mask = mask8.astype(bool)
    if foreground is not None:
        mask &= foreground
    level = float(rng.uniform(0.25, 0.6)) if rng.random() < 0.5 else float(rng.uniform(1.4, 2.2))
    out = image.astype(np.float32)
    out[mask] = out[mask] * level + (0 if level < 1 else 20)
    return np.clip(out, 0, 255).astype(np.uint8), mask


def make_anomaly(kind: str, image: np.ndarray, rng: np.random.Generator, source: np.ndarray | None = None,
                 foreground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic anomaly of one of KINDS; a line that the foreground cut to almost nothing
    becomes a texture anomaly, so every call returns a usable mask."""
    if kind == "shading":
        return add_shading(image, rng, foreground)
    if kind == "line":
        out, mask = add_lines(image, rng, foreground)
        if mask.sum() >= 8:
            return out, mask
    elif kind != "texture":
        raise ValueError(f"synthetic anomaly kind {kind!r} not one of {KINDS}")
    return add_anomaly(image, rng, source=source, foreground=foreground)


def paste_defect(image: np.ndarray, defect: np.ndarray, defect_mask: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A real defect cut out by its mask, turned by a multiple of 90 degrees, maybe mirrored, its
    brightness scaled by 0.8-1.2, pasted at a random place of image (both uint8 BGR, same size).
    Returns (new image, bool mask); an empty defect mask leaves the image as it is."""
    ys, xs = np.nonzero(defect_mask)
    if not len(ys):
        return image.copy(), np.zeros(image.shape[:2], bool)
    patch = defect[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    shape = defect_mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    k = int(rng.integers(4))
    patch, shape = np.rot90(patch, k), np.rot90(shape, k)
    if rng.random() < 0.5:
        patch, shape = patch[:, ::-1], shape[:, ::-1]
    h, w = image.shape[:2]
    ph, pw = min(patch.shape[0], h), min(patch.shape[1], w)
    patch, shape = patch[:ph, :pw], shape[:ph, :pw]
    y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out = image.copy()
    gain = float(rng.uniform(0.8, 1.2))
    region = out[y : y + ph, x : x + pw]
    region[shape] = np.clip(patch[shape].astype(np.float32) * gain, 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[y : y + ph, x : x + pw] = shape
    return out, mask

