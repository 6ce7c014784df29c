import pytest
import torch

from edge_inspector.model.memory_bank.search import ROW_BLOCK, CoresetSampler, RandomSampler, nearest, pad_bank


@pytest.mark.parametrize("chunk", [1, 7, 100, 1000])
def test_nearest_matches_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(50, 16, generator=g), torch.randn(300, 16, generator=g)
    d, i = nearest(q, bank, chunk)
    ref = torch.cdist(q, bank)
    assert torch.equal(i, ref.argmin(1))
    assert torch.allclose(d.sqrt(), ref.min(1).values, atol=1e-4)


@pytest.mark.parametrize("rows", [ROW_BLOCK, 300, 1000])
def test_block_search_of_exported_graphs_matches_argmin_ties_included(rows):
    g = torch.Generator().manual_seed(rows)
    q = torch.randn(64, 8, generator=g)
    bank = torch.randn(rows, 8, generator=g)
    bank[rows // 2] = bank[3]  # a tie: both searches must take the first of the two
    q[0] = bank[3]
    padded = torch.from_numpy(pad_bank(bank.numpy()))
    assert padded.shape[0] % ROW_BLOCK == 0 and torch.equal(padded[:rows], bank)
    d, i = nearest(q, padded, chunk=None)
    ref = torch.cdist(q, bank)
    assert torch.equal(i, ref.argmin(1)) and int(i[0]) == 3
    assert torch.allclose(d.sqrt(), ref.min(1).values, atol=1e-3)


def test_random_sampler_is_a_deterministic_subset():
    feats = torch.arange(200.0).view(100, 2)
    a, b = RandomSampler(10, seed=1).run(feats), RandomSampler(10, seed=1).run(feats)
    assert a.shape == (10, 2) and torch.equal(a, b)
    assert all((feats == row).all(1).any() for row in a)


def test_coreset_covers_every_cluster():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0], [50, 0], [0, 50], [50, 50]])
    # one big cluster and three small ones: random picks miss small clusters, k-center does not
    sizes = [1000, 5, 5, 5]
    feats = torch.cat([c + torch.randn(n, 2, generator=g) for c, n in zip(centres, sizes)])
    picked = CoresetSampler(4, seed=0).run(feats)
    assert torch.cdist(centres, picked).min(1).values.max() < 5


def test_coreset_indices_are_distinct_rows_and_respect_the_candidate_cap():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(5000, 8, generator=g).half()
    keep = CoresetSampler(64, seed=0, max_candidates=1000).indices(feats)
    assert keep.shape == (64,) and keep.unique().numel() == 64
    assert int(keep.max()) < 5000
    # k-center: the picked rows are spread out, farther apart than a random subset's closest pair
    picked, rand = feats[keep].float(), RandomSampler(64, seed=0).run(feats).float()
    closest = lambda x: (torch.cdist(x, x) + torch.eye(len(x)) * 1e9).min()  # noqa: E731
    assert closest(picked) > closest(rand)
