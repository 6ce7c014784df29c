"""tools/validate_defects.py and tools/ablation.py: what their variants share, and what each must build for itself."""

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


def run_variants(tool, split, workdir, variants, artefact=None) -> dict:
    """tools/validate_defects.py's run_fold on fold 0, 2 iterations: {variant: results}."""
    run: dict = {}
    args = SimpleNamespace(check_normals=False, workdir=workdir, folds=[0], iterations=2, seed=0,
                           from_artefact=artefact, variants=variants)
    tool.run_fold(args, split, 0, run, lambda: None)
    return run["results"]


def test_training_variants_on_one_memory_prepare_it_once(product_set, monkeypatch, tmp_path):
    """Training a variant used to prepare the fold's memory inside train_kmdgan and again for the
    new-tile counts; variants that share a memory now share one preparation, training included."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    import validate_defects

    from edge_inspector.data import load_split
    from edge_inspector.model.kmdgan import pool, training

    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1].bank_size)
        return pool.prepare(*args, **kwargs)

    monkeypatch.setattr(training, "prepare", counted)
    monkeypatch.setattr(validate_defects, "prepare", counted)
    split = load_split("folder", product_set)
    split.train_normal = split.train_normal[:12]
    small = "input_size=64;bank_size=300;batch_size=4"
    variants = [small, small + ";dice=image", "input_size=64;bank_size=200"]
    results = run_variants(validate_defects, split, tmp_path, variants)
    assert calls == [300, 200]  # one per memory, whatever else the variants change
    assert set(results) == set(variants)
    assert all(r["defects"] > 0 for r in results.values())


def test_from_artefact_variants_may_name_the_artefacts_own_memory(product_set, monkeypatch, tmp_path):
    """A model trained with another bank size is re-calibrated by naming its bank; naming another
    memory than the artefact's is refused."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    import validate_defects

    from edge_inspector.data import load_split

    split = load_split("folder", product_set)
    split.train_normal = split.train_normal[:12]
    trained = "input_size=64;bank_size=300;batch_size=4"

    def fold(variants, artefact=None):
        return run_variants(validate_defects, split, tmp_path, variants, artefact)

    fold([trained])
    artefact = tmp_path / f"{trained}.safetensors"
    again = fold(["input_size=64;bank_size=300;held_out_twins=2"], artefact)
    assert next(iter(again.values()))["defects"] > 0
    # a fixed cut is inference only: the artefact cut where the variant says, its threshold unchanged
    memory = "input_size=64;bank_size=300"
    chosen, fixed = fold([memory, memory + ";cut_rule=fixed;fixed_cut=[0.45, 0.2]"], artefact).values()
    assert (fixed["pixel_threshold"], fixed["extent"]) == (0.45, 0.2)
    assert fixed["threshold"] == chosen["threshold"] and fixed["found"] == chosen["found"]
    with pytest.raises(SystemExit, match="its memory is not the one"):
        fold(["input_size=64;bank_size=200;held_out_twins=2"], artefact)
    with pytest.raises(SystemExit, match="changes training"):
        fold(["input_size=64;bank_size=300;dice=image"], artefact)


def test_ablation_rows_with_another_input_size_get_their_own_preparation(product_set, monkeypatch):
    """tools/ablation.py used to refuse a row that changes the input size or the memory; such a row
    now gets its own preparation, and rows that share one are not prepared twice."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    import ablation
    from variants import variant_config

    from edge_inspector.data import load_split

    split = load_split("folder", product_set)
    split.train_normal = split.train_normal[:12]
    small = "input_size=64;bank_size=300"
    cache: dict = {}
    first = ablation.preparation_for(cache, split, variant_config(small), 0)
    # a row without memory matching trains from the same preparation, which keeps its banks
    bare = ablation.preparation_for(cache, split, variant_config(small + ";modules={memory_matching: false}"), 0)
    assert bare is first and len(first.banks.banks) == 2
    larger = ablation.preparation_for(cache, split, variant_config("input_size=96;bank_size=300"), 0)
    assert larger is not first and len(cache) == 2
    assert larger.normals.images.shape[1] == 96 and first.normals.images.shape[1] == 64


def test_the_tool_prints_the_held_out_defects_best_cut_as_a_station_file_sets_it(product_set, monkeypatch,
                                                                                   tmp_path, capsys):
    """A station with defects enough to hold some out can fix its mask cut where they say."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    import json

    import validate_defects
    import yaml

    from edge_inspector.config import KMDGANModelConfig

    out = tmp_path / "vd.json"
    monkeypatch.setattr("sys.argv", ["validate_defects.py", "--dataset", "folder", "--root", str(product_set),
                                     "--iterations", "2", "--variants", "input_size=64;bank_size=300;batch_size=4",
                                     "--workdir", str(tmp_path), "--out", str(out)])
    assert validate_defects.main() == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "fixed_cut" in x)
    best = validate_defects.best_cut(next(iter(json.loads(out.read_text())["folds"]["1"]["results"].values()))
                                     ["held_out_dice_grid"])
    setting = line.split("sets it: ")[1].split(" (mean Dice")[0]
    cfg = KMDGANModelConfig(kind="kmdgan", **yaml.safe_load(setting)["model"])  # it reads as a station file's
    assert cfg.cut_rule == "fixed" and cfg.fixed_cut == (best["pixel_threshold"], best["extent"])
