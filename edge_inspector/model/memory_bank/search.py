"""Memory bank of normal features: nearest-neighbour search and subsampling strategies.

Distances are a matmul (|q|^2 - 2 q.m + |m|^2) searched in bank chunks, not `cdist`, so that the
same code exports to ONNX / TensorRT and its temporaries stay bounded for large banks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

DEFAULT_CHUNK = 8192
ROW_BLOCK = 128  # exported graphs search the bank in blocks of this many rows (see nearest)
FAR = 1e4  # feature value of the rows that pad a bank to a whole number of blocks: never nearest
# (their squared norm, 1e8 x channels, is only ever computed in float32: see nearest)


def nearest(queries: torch.Tensor, bank: torch.Tensor, chunk: int | None = DEFAULT_CHUNK,
            blank: Callable[[torch.Tensor, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of queries (N, C), the squared distance to and index of its nearest bank row (M, C).

    chunk None: the form exported graphs use. One pass over the whole bank with no slicing, so that
    the graph keeps the bank's row count dynamic; the bank's rows must be a whole number of
    ROW_BLOCK blocks (pad_bank). Its nearest row is found without ArgMin over the full distance
    matrix (ONNX Runtime's ArgMin is a scalar loop, 10x slower than its ReduceMin): a ReduceMin
    per block of rows, an ArgMin over the block minima, then an ArgMin inside the winning block.
    Same index as a plain argmin, ties included (first block, then first row in it).
    blank(d, start): sets to inf, in place, the entries of a distance block (bank rows from start)
    that a query must not match.
    """
    # in float32 whatever the network's precision: a pad row's squared norm (FAR^2 x channels) and
    # the distance sums overflow half precision (max 65504); no-ops in a float32 network
    queries, bank = queries.float(), bank.float()
    q_sq = (queries * queries).sum(1)
    # |m|^2 - 2 q.m as one matmul of [q, 1] and [-2m, |m|^2]: no bias matrix to broadcast into
    # the output first (ONNX Runtime's Gemm does), the same cost as addmm in torch
    q_aug = torch.cat([queries, torch.ones_like(queries[:, :1])], 1)
    if chunk is None and blank is None:
        d = q_aug @ _augment(bank).T
        n = d.shape[0]
        blocks = d.reshape(n, -1, ROW_BLOCK)
        block_min = blocks.amin(2)
        best = block_min.argmin(1)
        inside = torch.gather(blocks, 1, best[:, None, None].expand(n, 1, ROW_BLOCK)).squeeze(1)
        d_min = torch.gather(block_min, 1, best[:, None]).squeeze(1)
        return (d_min + q_sq).clamp_min(0.0), best * ROW_BLOCK + inside.argmin(1)
    chunk = chunk or bank.shape[0]
    best_d = torch.full_like(q_sq, float("inf"))
    best_i = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    for start in range(0, bank.shape[0], chunk):
        d = q_aug @ _augment(bank[start : start + chunk]).T
        if blank is not None:
            blank(d, start)
        d_min, i_min = d.min(1)
        better = d_min < best_d
        best_d = torch.where(better, d_min, best_d)
        best_i = torch.where(better, i_min + start, best_i)
    return (best_d + q_sq).clamp_min(0.0), best_i


def own_rows(owners: torch.Tensor, items: torch.Tensor, per_item: int):
    """A blank() for nearest(): each item's queries (a run of per_item rows) skip its own bank rows.
    items: each item's owner (B,), or several owners per item (B, K; -1 pads). An item's own rows
    are few, so only those entries are touched."""
    per = items.reshape(len(items), -1)

    def blank(d: torch.Tensor, start: int) -> None:
        part_owners = owners[start : start + d.shape[1]]
        for k, own_ids in enumerate(per):
            own = torch.nonzero(torch.isin(part_owners, own_ids)).flatten()
            if own.numel():
                d[k * per_item : (k + 1) * per_item, own] = float("inf")

    return blank


def owners_left_out(nearest: dict, samples) -> torch.Tensor:
    """match's exclude for samples (B, K): each one's bank owners from {sample: [owners]}, padded
    with -1 (no bank row's owner)."""
    width = max([len(v) for v in nearest.values()] + [1])
    return torch.tensor([list(nearest.get(s, [])) + [-1] * (width - len(nearest.get(s, []))) for s in samples])


def _augment(bank: torch.Tensor) -> torch.Tensor:
    return torch.cat([-2.0 * bank, (bank * bank).sum(1, keepdim=True)], 1)


def pad_bank(bank: np.ndarray) -> np.ndarray:
    """A bank for an exported graph: rows padded to a whole number of ROW_BLOCK blocks with rows
    far from any feature (distance ~1e8 x channels), which no query ever takes as its nearest."""
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    missing = -bank.shape[0] % ROW_BLOCK
    if not missing:
        return bank
    return np.concatenate([bank, np.full((missing, bank.shape[1]), FAR, np.float32)])


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

    def rows(self, features: torch.Tensor) -> torch.Tensor:
        """Which rows of features (N, C) the bank keeps."""
        return self.indices(features.shape[0])

    def run(self, features: torch.Tensor) -> torch.Tensor:
        return features[self.rows(features)]


class CoresetSampler:
    """Greedy k-center coreset (PatchCore): each pick is the row farthest from those already
    picked, so the bank covers rare normal patterns that a random subset misses at the same size.

    Costs size x N x min(C, projection) multiply-adds: rows beyond max_candidates are first cut
    to a random subset, and wide features are searched on a random projection.
    """

    def __init__(self, size: int, seed: int = 0, projection: int = 128, max_candidates: int = 200_000):
        self.size, self.seed, self.projection, self.max_candidates = size, seed, projection, max_candidates

    def indices(self, features: torch.Tensor) -> torch.Tensor:
        """Which rows of features (N, C) to keep, in the order they were picked."""
        n = features.shape[0]
        if n <= self.size:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed)
        candidates = RandomSampler(self.max_candidates, self.seed).indices(n)
        reduced = features[candidates].float()
        if reduced.shape[1] > self.projection:
            proj = torch.randn(reduced.shape[1], self.projection, generator=g) / self.projection**0.5
            reduced = reduced @ proj
        sq = (reduced * reduced).sum(1)
        chosen = torch.empty(self.size, dtype=torch.long)
        chosen[0] = int(torch.randint(len(reduced), (1,), generator=g))
        dist = torch.full_like(sq, float("inf"))
        for k in range(self.size):
            if k:
                chosen[k] = dist.argmax()
            x = reduced[chosen[k]]
            # |r - x|^2 = |r|^2 - 2 r.x + |x|^2: one matrix-vector product per pick
            dist = torch.minimum(dist, sq - 2.0 * (reduced @ x) + sq[chosen[k]])
        return candidates[chosen]

    def rows(self, features: torch.Tensor) -> torch.Tensor:
        return self.indices(features)

    def run(self, features: torch.Tensor) -> torch.Tensor:
        return features[self.rows(features)]


SAMPLERS = {"random": RandomSampler, "coreset": CoresetSampler}
