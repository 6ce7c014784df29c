"""Memory bank of normal features: nearest-neighbour search and subsampling strategies.

Distances are a matmul (|q|^2 - 2 q.m + |m|^2) searched in bank chunks, not `cdist`, so that the
same code exports to ONNX / TensorRT and its temporaries stay bounded for large banks.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK = 8192


def nearest(queries: torch.Tensor, bank: torch.Tensor, chunk: int | None = DEFAULT_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of queries (N, C), the squared distance to and index of its nearest bank row (M, C).

    chunk None: one pass over the whole bank, with no slicing, so that a traced graph keeps the
    bank's row count dynamic (exported graphs take banks of any size).
    """
    if chunk is None:
        d = torch.addmm((bank * bank).sum(1)[None, :], queries, bank.T, alpha=-2.0)
        d_min, i_min = d.min(1)
        return (d_min + (queries * queries).sum(1)).clamp_min(0.0), i_min
    best_d, best_i = None, None
    for start in range(0, bank.shape[0], chunk):
        part = bank[start : start + chunk]
        # |m|^2 - 2 q.m in one fused op; |q|^2 is the same for every m and is added after the min
        d = torch.addmm((part * part).sum(1)[None, :], queries, part.T, alpha=-2.0)
        d_min, i_min = d.min(1)
        i_min = i_min + start
        if best_d is None:
            best_d, best_i = d_min, i_min
        else:
            better = d_min < best_d
            best_d = torch.where(better, d_min, best_d)
            best_i = torch.where(better, i_min, best_i)
    best_d = best_d + (queries * queries).sum(1)
    return best_d.clamp_min(0.0), best_i


class RandomSampler:
    """Uniform random subset of the features; deterministic under the seed."""

    def __init__(self, size: int, seed: int = 0):
        self.size, self.seed = size, seed

    def indices(self, n: int) -> torch.Tensor:
        """Which of n rows to keep (all of them where n fits the size)."""
        if n <= self.size:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed)
        return torch.randperm(n, generator=g)[: self.size]

    def run(self, features: torch.Tensor) -> torch.Tensor:
        return features[self.indices(features.shape[0])]


class CoresetSampler:
    """Greedy k-center coreset (PatchCore), on a random projection to bound its cost.

    Costs size x N x projection multiply-adds: use it for banks of a few thousand entries,
    or pass a random pre-subsample.
    """

    def __init__(self, size: int, seed: int = 0, projection: int = 128):
        self.size, self.seed, self.projection = size, seed, projection

    def run(self, features: torch.Tensor) -> torch.Tensor:
        n = features.shape[0]
        if n <= self.size:
            return features
        g = torch.Generator().manual_seed(self.seed)
        reduced = features
        if features.shape[1] > self.projection:
            proj = torch.randn(features.shape[1], self.projection, generator=g) / self.projection**0.5
            reduced = features @ proj
        chosen = [int(torch.randint(n, (1,), generator=g))]
        dist = ((reduced - reduced[chosen[0]]) ** 2).sum(1)
        for _ in range(self.size - 1):
            nxt = int(dist.argmax())
            chosen.append(nxt)
            dist = torch.minimum(dist, ((reduced - reduced[nxt]) ** 2).sum(1))
        return features[torch.tensor(chosen)]


SAMPLERS = {"random": RandomSampler, "coreset": CoresetSampler}
