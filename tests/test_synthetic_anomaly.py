import numpy as np

from edge_inspector.data.synthetic_anomaly import add_anomaly, perlin


def image():
    rng = np.random.default_rng(5)
    return rng.integers(90, 160, (96, 96, 3)).astype(np.uint8)


def test_deterministic_under_seed():
    a = add_anomaly(image(), np.random.default_rng(7))
    b = add_anomaly(image(), np.random.default_rng(7))
    c = add_anomaly(image(), np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_changes_only_inside_the_mask_and_mask_is_nonempty():
    src = image()
    for seed in range(5):
        out, mask = add_anomaly(src, np.random.default_rng(seed), source=np.zeros((50, 70), np.uint8))
        assert mask.any()
        assert np.array_equal(out[~mask], src[~mask])
        assert not np.array_equal(out[mask], src[mask])


def test_mask_stays_within_foreground():
    fg = np.zeros((96, 96), bool)
    fg[20:70, 30:80] = True
    for seed in range(5):
        _, mask = add_anomaly(image(), np.random.default_rng(seed), foreground=fg)
        assert mask.any() and not (mask & ~fg).any()


def test_perlin_range_and_shape():
    n = perlin((64, 48), (4, 2), np.random.default_rng(0))
    assert n.shape == (64, 48)
    assert np.abs(n).max() <= 1.0 + 1e-6 and n.std() > 0.05


def test_a_pasted_real_defect_keeps_its_shape_and_its_mask_is_exact():
    from edge_inspector.data.synthetic_anomaly import paste_defect

    rng = np.random.default_rng(0)
    normal = np.full((64, 64, 3), 100, np.uint8)
    defect = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:13, 20:40] = True  # a 3 x 20 scratch
    defect[mask] = 250
    for _ in range(20):
        image, pasted = paste_defect(normal, defect, mask, rng)
        assert pasted.sum() == mask.sum()  # the whole defect, rotated or mirrored, none of it lost
        ys, xs = np.nonzero(pasted)
        assert sorted([np.ptp(ys) + 1, np.ptp(xs) + 1]) == [3, 20]
        assert (image[pasted] >= 200).all() and (image[~pasted] == 100).all()  # only the defect changed
    untouched, empty = paste_defect(normal, defect, np.zeros_like(mask), rng)
    assert not empty.any() and (untouched == normal).all()


def test_shading_and_lines_change_the_surface_where_their_mask_says():
    from edge_inspector.data.synthetic_anomaly import KINDS, make_anomaly

    src = image()
    fg = np.zeros((96, 96), bool)
    fg[10:90, 10:90] = True
    for kind in KINDS:
        for seed in range(4):
            a = make_anomaly(kind, src, np.random.default_rng(seed), foreground=fg)
            b = make_anomaly(kind, src, np.random.default_rng(seed), foreground=fg)
            out, mask = a
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # deterministic under the seed
            assert mask.sum() >= 8 and not (mask & ~fg).any(), kind
            change = np.abs(out.astype(int) - src.astype(int)).max(-1)
            assert change[mask].mean() > 8, kind  # visibly changed inside
            if kind == "line":
                assert mask.mean() < 0.2 and (change[~mask] == 0).all()  # thin, nothing outside
            if kind == "shading":  # the same gain everywhere inside: brightness, not texture
                ratio = (out[mask].astype(float) + 1) / (src[mask].astype(float) + 1)
                assert ratio.std() < 0.1 and abs(ratio.mean() - 1) > 0.1


def test_an_unknown_kind_is_refused_by_name():
    import pytest

    from edge_inspector.data.synthetic_anomaly import make_anomaly

    with pytest.raises(ValueError, match="'speckle'"):
        make_anomaly("speckle", image(), np.random.default_rng(0))
