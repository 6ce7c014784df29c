"""Parity of a candidate runtime against PyTorch: maps, scores and verdicts on a set of images."""

from __future__ import annotations

import numpy as np

from edge_inspector.data.imageio import to_tensor_layout
from edge_inspector.data.synthetic_product import DEFECT_TYPES, draw_defect, make_part
from edge_inspector.errors import UserError
from edge_inspector.runtime.base import Backend

# max |difference| of anomaly-map probabilities. Not 1e-3: the two runtimes sum the distance
# matmul in a different order, so a location whose two nearest bank rows are almost equally near
# can take the other one; on the 573 Magnetic Tile test images that moved a map value by up to
# 1.5e-3 (docs/benchmarks.md), with every verdict the same
MAP_TOLERANCE = 5e-3
SCORE_TOLERANCE = 1e-3  # max |difference| of image scores, relative to max(1, |score|)
# an FP16 graph against the FP32 reference: half precision keeps about 3 decimal digits in the
# decoder, and the image score standardises the top mask probabilities by their spread on held-out
# normals, which can be a few thousandths: a score moves by up to half a spread (the tiny test
# model: 0.44). What must not differ is a verdict (docs/benchmarks.md measures Magnetic Tile)
TOLERANCES = {"fp32": (MAP_TOLERANCE, SCORE_TOLERANCE), "fp16": (5e-2, 1.0)}


def compare(reference: Backend, candidate: Backend, images: np.ndarray, threshold: float,
            precision: str = "fp32", pixel_level: float = 0.5) -> tuple[dict, np.ndarray, np.ndarray]:
    """(the figures check_parity judges, each image's reference score, each image's candidate
    score). pixel_level: the model's pixel threshold, for the pixels counted as changing side."""
    map_tolerance, score_tolerance = TOLERANCES[precision]
    ref_maps, ref_scores, maps, scores = [], [], [], []
    for i in range(len(images)):  # batch 1: what a line PC runs
        m, s = reference.infer(images[i : i + 1])
        ref_maps.append(m)
        ref_scores.append(s)
        m, s = candidate.infer(images[i : i + 1])
        maps.append(m)
        scores.append(s)
    ref_maps, maps = np.concatenate(ref_maps), np.concatenate(maps)
    ref_scores, scores = np.concatenate(ref_scores), np.concatenate(scores)
    flipped = (ref_scores >= threshold) != (scores >= threshold)
    # a verdict that moves is only acceptable evidence of noise if it sat this close to the threshold
    margin = float(np.abs(ref_scores[flipped] - threshold).max()) if flipped.any() else 0.0
    figures = {"images": len(images), "max_map_difference": float(np.abs(ref_maps - maps).max()),
               "max_score_difference": float((np.abs(ref_scores - scores) / np.maximum(1.0, np.abs(ref_scores))).max()),
               "max_absolute_score_difference": float(np.abs(ref_scores - scores).max()),
               "verdicts_differing": int(flipped.sum()), "differing_verdicts_max_margin": margin,
               # what a map difference can change downstream: pixels on the other side of the level
               "pixels_crossing_level": int(((ref_maps >= pixel_level) != (maps >= pixel_level)).sum()),
               "pixel_level": pixel_level, "pixels": int(maps.size), "precision": precision,
               "map_tolerance": map_tolerance, "score_tolerance": score_tolerance}
    return figures, ref_scores, scores


def check_parity(reference: Backend, candidate: Backend, images: np.ndarray, threshold: float,
                 precision: str = "fp32", pixel_level: float = 0.5) -> dict:
    """Maps and scores of candidate (a graph of this precision) against reference; raises with the
    figures where they differ, or where any verdict differs."""
    f, _, _ = compare(reference, candidate, images, threshold, precision, pixel_level)
    if f["max_map_difference"] > f["map_tolerance"] or f["max_score_difference"] > f["score_tolerance"] \
            or f["verdicts_differing"]:
        flips = f"{f['verdicts_differing']} of {f['images']} verdicts differ"
        if f["verdicts_differing"]:
            flips += (f" (their reference scores within {f['differing_verdicts_max_margin']:.3g} of the threshold "
                      f"{threshold:.4g}; the largest score difference is {f['max_absolute_score_difference']:.3g})")
        raise UserError(f"{candidate.name} ({precision}) does not match {reference.name}: max map difference "
                        f"{f['max_map_difference']:.2e} (tolerance {f['map_tolerance']:.0e}), max score difference "
                        f"{f['max_score_difference']:.2e} (tolerance {f['score_tolerance']:.0e}), {flips}")
    return f


def parity_images(size: int, count: int = 8, seed: int = 0) -> np.ndarray:
    """Synthetic parts, half with defects: what export checks parity on when no images are named."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        part = make_part(rng, size)
        if i % 2:
            part, _ = draw_defect(part, DEFECT_TYPES[i % len(DEFECT_TYPES)], rng)
        images.append(np.repeat(part[:, :, None], 3, axis=2))
    return to_tensor_layout(images)
