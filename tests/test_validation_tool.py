"""tools/validate_defects.py: what its variants share, and what each must build for itself."""

from pathlib import Path
from types import SimpleNamespace

import pytest


def test_variants_with_another_memory_get_their_own_preparation(product_set, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    import validate_defects

    from edge_inspector.config import KMDGANModelConfig
    from edge_inspector.data import load_split
    from edge_inspector.model.kmdgan.pool import prepare

    split = load_split("folder", product_set)
    split.train_normal = split.train_normal[:12]

    def config(**kw):
        return KMDGANModelConfig(**{"kind": "kmdgan", "input_size": 64, "bank_size": 300, **kw})

    def trained_on(cfg):  # a model whose memory is the one training builds for cfg
        return SimpleNamespace(banks=[b.clone() for b in prepare(split, cfg, seed=0, progress=False).banks.banks])

    cache: dict = {}
    default, smaller = trained_on(config()), trained_on(config(bank_size=200))
    first = validate_defects.fold_prepared(cache, split, config(), 0, default, "default")
    # a variant that trains otherwise on the same memory shares the preparation
    assert validate_defects.fold_prepared(cache, split, config(dice="image"), 0, default, "image") is first
    # one with a smaller bank gets its own (it was refused as "not the one this fold builds")
    other = validate_defects.fold_prepared(cache, split, config(bank_size=200), 0, smaller, "smaller")
    assert other is not first and len(cache) == 2 and other.banks.banks[0].shape[0] == 200
    with pytest.raises(SystemExit, match="its memory is not the one"):
        validate_defects.fold_prepared(cache, split, config(), 0, smaller, "smaller")
