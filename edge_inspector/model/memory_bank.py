"""Memory bank of normal features: nearest-neighbour search and subsampling strategies.

Distances are a matmul (|q|^2 - 2 q.m + |m|^2) searched in bank chunks, not `cdist`, so that the
same code exports to ONNX / TensorRT and its temporaries stay bounded for large banks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DEFAULT_CHUNK = 8192


def nearest(queries: torch.Tensor, bank: torch.Tensor, chunk: int | None = DEFAULT_CHUNK,
            blank: Callable[[torch.Tensor, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of queries (N, C), the squared distance to and index of its nearest bank row (M, C).

    chunk None: one pass over the whole bank, with no slicing, so that a traced graph keeps the
    bank's row count dynamic (exported graphs take banks of any size).
    blank(d, start): sets to inf, in place, the entries of a distance block (bank rows from start)
    that a query must not match.
    """
    q_sq = (queries * queries).sum(1)
    if chunk is None and blank is None:
        d = torch.addmm((bank * bank).sum(1)[None, :], queries, bank.T, alpha=-2.0)
        d_min, i_min = d.min(1)
        return (d_min + q_sq).clamp_min(0.0), i_min
    chunk = chunk or bank.shape[0]
    best_d = torch.full_like(q_sq, float("inf"))
    best_i = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    for start in range(0, bank.shape[0], chunk):
        part = bank[start : start + chunk]
        # |m|^2 - 2 q.m in one fused op; |q|^2 is the same for every m and is added after the min
        d = torch.addmm((part * part).sum(1)[None, :], queries, part.T, alpha=-2.0)
        if blank is not None:
            blank(d, start)
        d_min, i_min = d.min(1)
        better = d_min < best_d
        best_d = torch.where(better, d_min, best_d)
        best_i = torch.where(better, i_min + start, best_i)
    return (best_d + q_sq).clamp_min(0.0), best_i


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
