"""Batches of preprocessed images (and masks) from samples; unreadable files are skipped by name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from edge_inspector.data.imageio import read_image, read_mask, to_tensor_layout
from edge_inspector.data.sample import Sample


@dataclass
class Batch:
    images: np.ndarray  # (B, 3, S, S) float32 RGB in [0, 1]
    masks: np.ndarray  # (B, S, S) bool
    samples: list[Sample]


def iter_batches(samples: Sequence[Sample], size: int, batch_size: int = 8) -> Iterator[Batch]:
    images, masks, kept = [], [], []
    for sample in samples:
        image = read_image(sample.image, size)
        mask = read_mask(sample.mask, (size, size)) if image is not None else None
        if image is None or mask is None:
            continue  # read_image / read_mask already named the file in a warning
        images.append(image)
        masks.append(mask)
        kept.append(sample)
        if len(kept) == batch_size:
            yield Batch(to_tensor_layout(images), np.stack(masks), kept)
            images, masks, kept = [], [], []
    if kept:
        yield Batch(to_tensor_layout(images), np.stack(masks), kept)
