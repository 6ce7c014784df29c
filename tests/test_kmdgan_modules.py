import pytest
import torch

from edge_inspector.model.kmdgan.modules import (
    AnomalyMapModulation,
    ChannelAttention,
    CoordinateAttention,
    CrossScaleFusion,
    EdgeContextHybrid,
    MemoryFeatureMatching,
    PatchDiscriminator,
    match_memory,
)

g = torch.Generator().manual_seed(0)


def rand(*shape, grad=False):
    return torch.randn(*shape, generator=g).requires_grad_(grad)


def grads_reach(module, *inputs):
    out = module(*inputs)
    out = out if isinstance(out, torch.Tensor) else sum(o.sum() for o in (out if isinstance(out, list) else out))
    out.sum().backward()
    params = [p for p in module.parameters() if p.requires_grad]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert all(x.grad is not None for x in inputs if x.requires_grad)


def test_memory_matching_outputs_both_differences_and_distance():
    f, m = rand(2, 5, 4, 4, grad=True), rand(2, 5, 4, 4)
    out, dist = MemoryFeatureMatching()(f, m)
    assert out.shape == (2, 15, 4, 4) and dist.shape == (2, 1, 4, 4)
    assert torch.allclose(out[:, 5:10] - out[:, 10:], f - m, atol=1e-6)  # ReLU(f-m) - ReLU(m-f) = f - m
    assert (out[:, 5:] >= 0).all()
    assert torch.allclose(dist[:, 0], (f - m).norm(dim=1), atol=1e-5)
    (out.sum() + dist.sum()).backward()
    assert f.grad is not None


def test_match_memory_agrees_with_brute_force():
    f, bank = rand(3, 6, 5, 4), rand(97, 6)
    m = match_memory(f, bank, chunk=10)
    q = f.permute(0, 2, 3, 1).reshape(-1, 6)
    ref = bank[torch.cdist(q, bank).argmin(1)].view(3, 5, 4, 6).permute(0, 3, 1, 2)
    assert torch.allclose(m, ref)


def test_match_memory_never_returns_the_items_own_rows():
    f = rand(2, 4, 3, 3)
    # the bank holds item 0's own features (owner 0) and others (owner 1): item 0 must not match itself
    own = f[0].permute(1, 2, 0).reshape(-1, 4)
    bank = torch.cat([own, rand(20, 4)])
    owners = torch.tensor([0] * len(own) + [1] * 20)
    m = match_memory(f, bank, chunk=7, exclude=(owners, torch.tensor([0, 5])))
    q0 = f[:1].permute(0, 2, 3, 1).reshape(-1, 4)
    ref0 = bank[len(own):][torch.cdist(q0, bank[len(own):]).argmin(1)]
    assert torch.allclose(m[0].permute(1, 2, 0).reshape(-1, 4), ref0)
    # item 1 (owner 5) may match anything, including image 0's rows
    q1 = f[1:].permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.allclose(m[1].permute(1, 2, 0).reshape(-1, 4), bank[torch.cdist(q1, bank).argmin(1)])


def test_match_memory_skips_several_owners_per_item():
    f = rand(2, 4, 3, 3)
    # item 0's features under two owners (a part imaged twice): both must be skipped, -1 pads
    own = f[0].permute(1, 2, 0).reshape(-1, 4)
    bank = torch.cat([own, own + 1e-3, rand(20, 4)])
    owners = torch.tensor([0] * len(own) + [2] * len(own) + [1] * 20)
    others = bank[2 * len(own):]
    q0 = f[:1].permute(0, 2, 3, 1).reshape(-1, 4)
    m = match_memory(f, bank, chunk=7, exclude=(owners, torch.tensor([[0, 2], [5, -1]])))
    assert torch.allclose(m[0].permute(1, 2, 0).reshape(-1, 4), others[torch.cdist(q0, others).argmin(1)])
    # one owner left out: the other copy is found (the single-owner exclusion is not enough)
    m1 = match_memory(f, bank, chunk=7, exclude=(owners, torch.tensor([[0, -1], [5, -1]])))
    assert torch.allclose(m1[0].permute(1, 2, 0).reshape(-1, 4), own + 1e-3)


@pytest.mark.parametrize("kind", [ChannelAttention, CoordinateAttention])
def test_attention_keeps_shape_and_learns(kind):
    torch.manual_seed(0)  # built here, not at collection, so its weights do not depend on test order
    module = kind(16)
    x = rand(2, 16, 6, 5, grad=True)
    assert module(x).shape == x.shape
    grads_reach(module, x)


def test_cross_scale_fusion_keeps_each_scale():
    xs = [rand(2, 8, 16, 16, grad=True), rand(2, 12, 8, 8, grad=True), rand(2, 16, 4, 4, grad=True)]
    fusion = CrossScaleFusion([8, 12, 16])
    out = fusion(xs)
    assert [o.shape for o in out] == [x.shape for x in xs]
    sum(o.sum() for o in out).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in xs)


def test_map_modulation_gates_by_distance():
    amm = AnomalyMapModulation(4)
    x = torch.ones(1, 4, 8, 8)
    out = amm(x, torch.zeros(1, 1, 4, 4))
    assert out.shape == x.shape and (out >= x).all() and (out <= 2 * x).all()  # x * (1 + sigmoid)
    d = torch.zeros(1, 1, 8, 8)
    d[..., 2:4, 2:4] = 5.0
    out = amm(x, d)
    assert not torch.allclose(out[..., 2, 2], out[..., 7, 7])  # the gate follows the map
    grads_reach(amm, rand(1, 4, 8, 8, grad=True), rand(1, 1, 8, 8, grad=True))


def test_edge_context_hybrid():
    ech = EdgeContextHybrid(6, 10)
    x, image, coarse = rand(2, 6, 16, 16, grad=True), torch.rand(2, 3, 32, 32), rand(2, 10, 4, 4, grad=True)
    assert ech(x, image, coarse).shape == (2, 6, 16, 16)
    grads_reach(ech, x, image, coarse)


def test_patch_discriminator_judges_pairs_patchwise():
    d = PatchDiscriminator(8)
    out = d(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 1, 8, 8)
    grads_reach(d, torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64, requires_grad=True))
