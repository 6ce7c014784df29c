"""Anomalies made in feature space: noise only where the blob is, memory distances that see it,
and a training that is unchanged where the option is off."""

import numpy as np
import pytest
import torch

from edge_inspector.config import KMDGANModelConfig
from edge_inspector.data import load_split
from edge_inspector.model.kmdgan.feature_anomaly import perturb
from edge_inspector.model.kmdgan.network import STRIDES, generator_for
from edge_inspector.model.kmdgan.pool import prepare
from edge_inspector.model.kmdgan.training import BatchMaker, train_kmdgan


def small_config(**kw):
    return KMDGANModelConfig(kind="kmdgan", input_size=64, bank_size=300, iterations=4, batch_size=6, **kw)


@pytest.fixture(scope="module")
def prepared(product_set):
    split = load_split("folder", product_set)
    split.train_normal = split.train_normal[:12]
    cfg = small_config()
    return split, cfg, prepare(split, cfg, seed=0, progress=False)


def test_noise_lands_only_in_the_cells_the_blob_covers():
    rng = np.random.default_rng(0)
    feats = [torch.zeros(1, 4, 64 // s, 64 // s) for s in STRIDES]
    spreads = [torch.tensor([0.0, 1.0, 2.0, 4.0])] * len(STRIDES)
    mask = np.zeros((64, 64), bool)
    mask[:16, :16] = True  # the top-left 16 x 16: 4 x 4 cells at stride 4, one cell at 16
    mask[40:44, 40:41] = True  # a thin mark: a quarter of a stride-4 cell, so no noise
    out = perturb(feats, mask, spreads, rng)
    for s, f in zip(STRIDES, out):
        inside = f[0, :, : 16 // s, : 16 // s]
        assert torch.count_nonzero(f) == torch.count_nonzero(inside)  # nothing outside the blob
        assert torch.all(inside[0] == 0)  # a channel with no spread gets no noise
        assert inside[3].abs().mean() > inside[1].abs().mean()  # the noise follows each channel's spread


def test_feature_anomalies_keep_the_image_and_raise_the_memory_distance_inside_the_blob(prepared):
    _, cfg, prep = prepared
    model = generator_for(cfg)
    maker = BatchMaker(model, prep.normals, prep.few, prep.banks, 16, np.random.default_rng(1), 0.0,
                       ("texture",), feature_share=1.0)
    pool = maker._synthetic()
    assert len(pool.images) == maker.n_syn and all(m.any() for m in pool.masks)
    # the image is a training normal as it is: only its features changed
    owners = [int(np.flatnonzero((prep.normals.images == image).all(axis=(1, 2, 3)))[0]) for image in pool.images]
    i = STRIDES.index(model.matched[0])

    def distance(p, items):
        return (p.feats[i][items].float() - p.memories[0][items].float()).pow(2).sum(1)

    share = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(pool.masks).float()[:, None],
                                                    pool.feats[i].shape[-2:])[:, 0]
    before, after = distance(prep.normals, owners), distance(pool, list(range(len(owners))))
    blob = share >= 0.5
    assert blob.any() and torch.equal(before[~blob], after[~blob])  # the rest as it was
    assert after[blob].mean() > 1.5 * before[blob].mean()  # the same places, farther from the memory


def test_without_feature_anomalies_training_draws_as_before(prepared, tmp_path):
    split, cfg, prep = prepared
    plain = train_kmdgan(split, cfg, tmp_path / "plain.safetensors", seed=3, progress=False, prepared=prep)
    off = train_kmdgan(split, small_config(feature_anomalies=0.0), tmp_path / "off.safetensors", seed=3,
                       progress=False, prepared=prep)
    on = train_kmdgan(split, small_config(feature_anomalies=1.0), tmp_path / "on.safetensors", seed=3,
                      progress=False, prepared=prep)
    a, b, c = (x.model.state_dict() for x in (plain, off, on))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the option reaches the batches
    assert on.meta["training"]["feature_anomalies"] == 1.0
