import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_inspector.config import KMDGANModelConfig
from edge_inspector.data import load_split
from edge_inspector.errors import UserError
from edge_inspector.evaluation.harness import evaluate, format_table
from edge_inspector.model.backbone import EfficientNetLiteFeatures
from edge_inspector.model.kmdgan import training as train_module
from edge_inspector.model.kmdgan.artefact import load_artefact
from edge_inspector.model.kmdgan.network import STRIDES, KMDGANArchitecture, KMDGANGenerator
from edge_inspector.model.kmdgan.training import train_kmdgan

SWITCHES = ["memory_matching", "cross_scale_fusion", "map_modulation", "edge_context"]


@pytest.fixture(scope="module")
def backbone():
    return EfficientNetLiteFeatures(STRIDES)


@pytest.mark.parametrize("off", [()] + [(s,) for s in SWITCHES] + [tuple(SWITCHES)])
def test_generator_shapes_and_gradients_with_each_part_off(backbone, off):
    arch = KMDGANArchitecture(**{s: False for s in off})
    model = KMDGANGenerator(arch, backbone)
    image = torch.rand(2, 3, 64, 64)
    banks = [torch.randn(50, backbone.channels[STRIDES.index(s)]) for s in model.matched]
    feats = model.features(image)
    logits, distances = model.decode(image, feats, model.match(feats, banks))
    assert logits.shape == (2, 1, 64, 64)
    assert len(distances) == (0 if "memory_matching" in off else 1 + 1)
    logits.mean().backward()
    trainable = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    assert all(p.grad is not None for p in trainable)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    model.eval()
    maps, scores = model(image, *banks)
    assert maps.shape == (2, 64, 64) and scores.shape == (2,)
    assert ((maps >= 0) & (maps <= 1)).all()


def small_config(**kw):
    base = dict(kind="kmdgan", input_size=128, bank_size=2000, iterations=40, batch_size=6)
    return KMDGANModelConfig(**{**base, **kw})


@pytest.fixture
def trained(tiny_kmdgan):
    return tiny_kmdgan


def test_tiny_train_then_infer_reaches_stated_metric(trained):
    split, model = trained

    def predict(images):
        maps, scores = model(torch.from_numpy(images))
        return maps.numpy(), scores.numpy()

    result = evaluate(predict, split, 128, model.threshold, batch_size=4, progress=False,
                      pixel_threshold=model.pixel_threshold, extent=model.pixel_extent)
    m = result["metrics"]
    # the stated bar for 40 iterations on the project's synthetic product set
    assert m["image_auroc"] >= 0.9, m
    assert m["pixel_auroc"] >= 0.9, m
    # mask quality per defect kind: every kind of the test part, and together the overall mean
    by_type = result["mask_by_defect_type"]
    counts = {k: sum(s.defect_type == k for s in split.test_anomalous) for k in by_type}
    assert set(by_type) == {s.defect_type for s in split.test_anomalous} and len(by_type) > 1
    overall = sum(by_type[k]["mask_iou"] * n for k, n in counts.items()) / sum(counts.values())
    assert overall == pytest.approx(result["mask_at_operating_point"]["mask_iou"], abs=1e-3)
    # detection per kind: the overall AUROC and escape rate are the count-weighted means of the kinds'
    detection = result["detection_by_defect_type"]
    assert set(detection) == set(by_type) and sum(d["count"] for d in detection.values()) == sum(counts.values())
    for key in ("image_auroc", "escape_rate"):
        mean = sum(d[key] * d["count"] for d in detection.values()) / sum(counts.values())
        assert mean == pytest.approx(m[key], abs=1e-3)
    # NG needing a region as well as the score: never more false rejects, never fewer escapes
    gated = result["verdict_needing_a_region"]
    assert gated["false_reject_rate"] <= m["false_reject_rate"] and gated["escape_rate"] >= m["escape_rate"]
    assert gated["false_reject_rate"] <= result["mask_at_operating_point"]["spurious_share"]
    assert "NG needing a region" in format_table({**result, "split": split.sizes()})


def test_artefact_round_trip_gives_identical_outputs(trained):
    _, model = trained
    again = load_artefact(model.path)
    image = torch.rand(2, 3, 128, 128)
    a, b = model(image), again(image)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert again.meta["architecture"]["memory_matching"] is True
    assert again.meta["input_size"] == 128 and again.meta["normalisation"]["mean"] == 0.5
    assert again.meta["training"]["few_shot"] == 6 and np.isfinite(again.threshold)


def test_positional_profile_is_learned_from_normals_and_travels_in_the_artefact(trained):
    _, model = trained
    g = load_artefact(model.path).model
    assert g.arch.position_sides == [128 // s for s in g.matched]
    for i, s in enumerate(g.matched):
        profile = g.position(i)[0, 0]
        assert profile.shape == (128 // s, 128 // s) and abs(float(profile.mean()) - 1) < 1e-4
        # what it is for: on the training normals, border locations sit farther from the bank
        border = torch.cat([profile[0], profile[-1], profile[1:-1, 0], profile[1:-1, -1]])
        assert float(border.mean()) > float(profile[1:-1, 1:-1].mean())


def test_corrupt_artefacts_are_refused_with_one_line(trained, tmp_path):
    _, model = trained
    data = model.path.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "flipped": data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:],
        "garbage": b"not an artefact at all",
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(UserError) as info:
            load_artefact(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name
    with pytest.raises(UserError, match="not found"):
        load_artefact(tmp_path / "absent.safetensors")


def rewritten(model, tmp_path, name, edit, reseal=True):
    """The trained artefact with its metadata edited; resealed: its checksum recomputed."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from edge_inspector.model.kmdgan.artefact import checksum

    with safe_open(str(model.path), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        header = fh.metadata()
    meta = json.loads(header["metadata"])
    edit(meta)
    if reseal:
        meta["sha256"] = checksum(tensors, meta)
    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={"format": header["format"], "metadata": json.dumps(meta)})
    return path


def test_artefact_with_mismatched_architecture_is_refused(trained, tmp_path):
    _, model = trained
    path = rewritten(model, tmp_path, "mismatch", lambda m: m["architecture"].update(edge_context=False))
    with pytest.raises(UserError, match="do not fit the architecture"):
        load_artefact(path)


def test_artefact_of_the_guided_filter_version_loads_where_it_was_off(trained, tmp_path):
    _, model = trained
    off = rewritten(model, tmp_path, "guide-off", lambda m: m["architecture"].update(map_guide_radius=0,
                                                                                    map_guide_eps=0.01))
    again = load_artefact(off)
    assert again.threshold == pytest.approx(model.threshold) and "map_guide_radius" not in again.model.arch.as_dict()
    on = rewritten(model, tmp_path, "guide-on", lambda m: m["architecture"].update(map_guide_radius=4,
                                                                                  map_guide_eps=0.001))
    with pytest.raises(UserError, match="map_guide_radius 4"):
        load_artefact(on)


def test_edited_artefact_metadata_is_refused_in_one_line(trained, tmp_path):
    _, model = trained
    # an edited field under the old checksum: the checksum covers the metadata too
    path = rewritten(model, tmp_path, "edited", lambda m: m.update(threshold=-1e9), reseal=False)
    with pytest.raises(UserError, match="does not match its checksum"):
        load_artefact(path)
    # resealed, but outside what a station file allows: the same rules as the config refuse it
    path = rewritten(model, tmp_path, "tiny-input", lambda m: m.update(input_size=1))
    with pytest.raises(UserError, match=r"metadata incomplete or invalid \(input_size: ") as info:
        load_artefact(path)
    assert "\n" not in str(info.value)


def test_training_is_deterministic_and_resumable(product_set, tmp_path, monkeypatch):
    split = load_split("folder", product_set)
    split.train_normal = split.train_normal[:12]
    cfg = small_config(input_size=64, bank_size=300, iterations=6, batch_size=4)
    full = train_kmdgan(split, cfg, tmp_path / "full.safetensors", seed=2, progress=False)

    # interrupt a second run after its checkpoint at iteration 3, then resume it
    monkeypatch.setattr(train_module, "CHECKPOINT_EVERY", 3)
    calls = itertools.count()
    real_focal = train_module.focal_loss

    def interrupted(*a, **k):
        if next(calls) == 4:
            raise KeyboardInterrupt
        return real_focal(*a, **k)

    monkeypatch.setattr(train_module, "focal_loss", interrupted)
    out = tmp_path / "not-yet-made" / "resumed.safetensors"  # its folder is made, checkpoint included
    with pytest.raises(KeyboardInterrupt):
        train_kmdgan(split, cfg, out, seed=2, progress=False)
    assert (out.parent / "resumed.safetensors.ckpt").is_file() and not out.exists()
    monkeypatch.setattr(train_module, "focal_loss", real_focal)
    resumed = train_kmdgan(split, cfg, out, seed=2, resume=True, progress=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert not (out.parent / "resumed.safetensors.ckpt").exists()



def test_hard_normals_draw_the_normals_the_mask_fires_on_and_resume_alike(product_set, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from edge_inspector.model.kmdgan.training import PEAK_FLOOR, BatchMaker

    # the draw: half the normals by their last peak, half uniformly
    maker = BatchMaker.__new__(BatchMaker)
    maker.normals, maker.n_normal = SimpleNamespace(images=np.zeros((50, 1))), 4
    maker.rng, maker.hard, maker.peaks = np.random.default_rng(0), 0.5, np.full(50, PEAK_FLOOR)
    maker.peaks[7] = 1.0 + PEAK_FLOOR  # the mask fired fully on normal 7
    drawn = np.concatenate([maker._normal_indices() for _ in range(200)])
    # 2 of 4 slots drawn by weight (1.05 of 3.5: 0.3), 2 uniformly (0.02): 0.16 of the slots, not 0.02
    assert 0.12 < np.mean(drawn == 7) < 0.2
    maker.drawn_normals = np.array([3, 7])
    prob = torch.zeros(3, 1, 4, 4)
    prob[0, 0, 1, 1] = 0.9  # normal 3 now fires, normal 7 no longer; the third item is not a normal
    maker.record(prob)
    assert maker.peaks[3] == pytest.approx(0.9 + PEAK_FLOOR) and maker.peaks[7] == pytest.approx(PEAK_FLOOR)

    # training with it repeats under the seed, and a resumed run draws as the uninterrupted one
    split = load_split("folder", product_set)
    split.train_normal = split.train_normal[:12]
    cfg = small_config(input_size=64, bank_size=300, iterations=6, batch_size=4, hard_normals=1.0)
    full = train_kmdgan(split, cfg, tmp_path / "full.safetensors", seed=2, progress=False)
    assert full.meta["training"]["hard_normals"] == 1.0
    plain = train_kmdgan(split, small_config(input_size=64, bank_size=300, iterations=6, batch_size=4),
                         tmp_path / "plain.safetensors", seed=2, progress=False)
    a, c = full.model.state_dict(), plain.model.state_dict()
    assert not all(torch.allclose(a[k].float(), c[k].float(), atol=1e-6) for k in a)  # other batches
    monkeypatch.setattr(train_module, "CHECKPOINT_EVERY", 3)
    steps = itertools.count()
    real_step = train_module.Optimisation.step

    def interrupted(self, *a, **k):
        if next(steps) == 4:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(train_module.Optimisation, "step", interrupted)
    out = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_kmdgan(split, cfg, out, seed=2, progress=False)
    monkeypatch.setattr(train_module.Optimisation, "step", real_step)
    resumed = train_kmdgan(split, cfg, out, seed=2, resume=True, progress=False)
    b = resumed.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_the_pixel_threshold_is_chosen_on_training_data_and_stored(trained):
    _, model = trained
    validation = model.meta["training"]["pixel_threshold_validation"]
    assert 0 < model.pixel_threshold < 1 and str(model.pixel_threshold) in validation
    best = validation[str(model.pixel_threshold)]["objective"]
    assert best == max(v["objective"] for v in validation.values())  # the best candidate on validation data
    chosen = validation[str(model.pixel_threshold)]
    # the extent chosen with it is stored (None where the plain cut did as well) and never does worse
    assert model.pixel_extent == (None if chosen["extent"] >= model.pixel_threshold else chosen["extent"])
    assert all(v["anomaly_dice"] >= v["anomaly_dice_plain"] for v in validation.values())



def test_the_cut_is_chosen_on_the_anomalies_cut_defects_names(trained):
    from edge_inspector.model.kmdgan.pixel_threshold import choose_pixel_threshold
    from edge_inspector.model.scoring import split_holdout

    split, model = trained
    _, holdout = split_holdout(split.train_normal)
    args = (model.model, model.banks, holdout)
    synthetic = choose_pixel_threshold(*args, split.few_shot, model.input_size, 1, defects="synthetic")
    assert synthetic == choose_pixel_threshold(*args, [], model.input_size, 1)  # the few-shot images never read
    trained_cut = choose_pixel_threshold(*args, split.few_shot, model.input_size, 1)
    assert trained_cut[2] == model.meta["training"]["pixel_threshold_validation"]  # what train chose with
    dice = [f["anomaly_dice"] for f in synthetic[2].values()]
    assert dice != [f["anomaly_dice"] for f in trained_cut[2].values()]  # the few-shot defects entered
    # the held-out normals' half is the same data either way
    assert [f["normals_clean"] for f in synthetic[2].values()] == [f["normals_clean"] for f in trained_cut[2].values()]


def test_the_lowest_tie_rule_takes_the_lowest_cut_within_one_normal_of_the_best(trained):
    from edge_inspector.model.kmdgan.pixel_threshold import choose_pixel_threshold
    from edge_inspector.model.scoring import split_holdout

    split, model = trained
    _, holdout = split_holdout(split.train_normal)
    args = (model.model, model.banks, holdout, split.few_shot, model.input_size, 1)
    level, extent, figures = choose_pixel_threshold(*args, rule="lowest_tie")
    assert figures == model.meta["training"]["pixel_threshold_validation"]  # the same validation, another pick
    assert level <= model.pixel_threshold
    one_normal = 0.5 / len(holdout)
    best = max(f["objective"] for f in figures.values())
    # no lower threshold is within one normal's share of the best, even at its best extent
    assert all(f["objective"] < best - one_normal + 1e-3 for t, f in figures.items() if float(t) < level)
    assert figures[str(level)]["objective"] >= best - one_normal - 1e-3
    assert extent is None or extent < level
    # lowest_threshold: the same threshold, cut at that threshold's own best extent
    low_level, low_extent, low_figures = choose_pixel_threshold(*args, rule="lowest_threshold")
    assert low_figures == figures and low_level == level
    assert (low_extent if low_extent is not None else low_level) == figures[str(level)]["extent"]


def test_the_fixed_rule_takes_the_cut_it_is_given_and_records_the_same_validation(trained):
    from edge_inspector.config.station import FIXED_CUT
    from edge_inspector.model.kmdgan.pixel_threshold import choose_pixel_threshold
    from edge_inspector.model.scoring import split_holdout

    split, model = trained
    _, holdout = split_holdout(split.train_normal)
    args = (model.model, model.banks, holdout, split.few_shot, model.input_size, 1)
    level, extent, figures = choose_pixel_threshold(*args, rule="fixed")
    assert (level, extent) == FIXED_CUT and figures == model.meta["training"]["pixel_threshold_validation"]
    assert choose_pixel_threshold(*args, rule="fixed", fixed=(0.37, None))[:2] == (0.37, None)  # off the grid
    assert choose_pixel_threshold(*args, rule="best", fixed=(0.37, None))[:2] == (model.pixel_threshold,
                                                                                   model.pixel_extent)
    # without held-out normals there is nothing to choose on, and the fixed cut still holds
    assert choose_pixel_threshold(model.model, model.banks, [], [], model.input_size, rule="fixed")[:2] == FIXED_CUT


def test_the_dice_grid_finds_the_hysteresis_pair_that_cuts_a_defect_exactly():
    from edge_inspector.model.kmdgan.pixel_threshold import best_extent, dice_grid

    anomaly_map = np.zeros((32, 32), np.float32)
    anomaly_map[8:20, 8:20] = 0.3  # the defect's faint rim
    anomaly_map[12:16, 12:16] = 0.9  # its confident core
    anomaly_map[26:30, 26:30] = 0.3  # a faint blob that reaches no threshold: never kept
    truth = np.zeros((32, 32), bool)
    truth[8:20, 8:20] = True
    grid = dice_grid([anomaly_map], [truth])
    assert grid[0.85][0.25] == 1.0 and best_extent(grid[0.85]) == 0.3  # ties: the highest extent that holds the rim
    assert grid[0.85][0.85] == pytest.approx(2 * 16 / (16 + 144))  # the plain cut keeps the core alone
    assert dice_grid([anomaly_map], [truth], hysteresis=False)[0.85] == {0.85: grid[0.85][0.85]}


def test_the_threshold_record_says_what_the_held_out_normals_can_tell(trained):
    from edge_inspector.model.scoring import rate_upper_bound

    _, model = trained
    training = model.meta["training"]
    record = training["threshold_held_out"]
    assert record["held_out_normals"] == training["held_out_normals"] > 0
    # the fixture's target is 10 %: at most that share of the held-out normals reach the threshold
    assert record["rejected"] <= int(0.1 * record["held_out_normals"])
    n, k = record["held_out_normals"], record["rejected"]
    assert record["false_reject_upper_95"] == round(rate_upper_bound(k, n), 4) > k / n


def test_held_out_normals_are_scored_without_their_twin_in_the_memory(product_set, tmp_path):
    import shutil

    from edge_inspector.data import load_split
    from edge_inspector.data.sample import Sample, Split
    from edge_inspector.model.kmdgan.network import generator_for
    from edge_inspector.model.kmdgan.pool import prepare, set_distance_scale
    from edge_inspector.model.kmdgan.score_calibration import calibrate_scores, outputs
    from edge_inspector.model.scoring import split_holdout

    split = load_split("folder", product_set)
    normals = list(split.train_normal)
    fit, holdout = split_holdout(normals)
    # the first held-out normal (position 9) becomes a copy of the fourth training normal, and so
    # does the fifth: the part imaged three times, two twins in the memory
    twin = Sample(tmp_path / ("twin" + fit[3].image.suffix), None, 0, "good")
    other = Sample(tmp_path / ("other" + fit[3].image.suffix), None, 0, "good")
    for sample in (twin, other):
        shutil.copy(fit[3].image, sample.image)
    normals[9], normals[4] = twin, other
    cfg = small_config()
    prepared = prepare(Split(normals, split.few_shot), cfg, seed=0, progress=False)
    assert prepared.holdout[0] == twin and set(prepared.holdout_nearest[twin][:2]) == {3, 4}
    g = generator_for(cfg).eval()
    set_distance_scale(g, prepared.normals)
    banks = prepared.banks.banks
    # the tools re-calibrating an artefact check that its memory is the one whose owners they hold
    assert prepared.banks.hold([b.clone() for b in banks]) and not prepared.banks.hold([b + 1 for b in banks])
    _, whole = outputs(g, banks, [twin], cfg.input_size)
    _, left = outputs(g, banks, [twin], cfg.input_size, prepared.leave_out(2))
    for d_whole, d_left in zip(whole, left):
        # with its twins' rows in the memory it finds itself (a distance near 0: the bank is float16)
        # at many locations; without both twins, hardly anywhere (the bank's sampler may hold rows of
        # either copy: tests/test_kmdgan_modules.py shows that one owner left out is not enough)
        assert (d_whole < 0.01).float().mean() > 0.2 and (d_left < 0.01).float().mean() < 0.02
        assert d_left.mean() > 2 * d_whole.mean()
    # the threshold's scores: the twin counts as a new part would, and the record says so
    calibrate_scores(g, banks, prepared.holdout, split.few_shot, cfg.input_size, 0.1, prepared.leave_out(2))
    assert g.threshold_record["twin"] == "left_out" and g.threshold_record["twins_left_out"] == 2
    calibrate_scores(g, banks, prepared.holdout, split.few_shot, cfg.input_size, 0.1)
    assert g.threshold_record["twin"] == "kept" and "twins_left_out" not in g.threshold_record
    with pytest.raises(ValueError, match="held_out_twins"):
        prepared.leave_out(9)


def test_training_twins_train_on_the_memory_a_new_part_sees(product_set, tmp_path, caplog):
    import shutil

    from edge_inspector.data import load_split
    from edge_inspector.data.sample import Sample, Split
    from edge_inspector.model.kmdgan.network import STRIDES, generator_for
    from edge_inspector.model.kmdgan.pool import nearest_rows, prepare
    from edge_inspector.model.kmdgan.training import train_kmdgan

    split = load_split("folder", product_set)
    normals = list(split.train_normal)
    # training normals 3 and 4 are one part imaged twice: each other's twin in the memory
    twin = Sample(tmp_path / ("twin" + normals[3].image.suffix), None, 0, "good")
    shutil.copy(normals[3].image, twin.image)
    normals[4] = twin
    cfg = small_config(training_twins=1)
    prepared = prepare(Split(normals, split.few_shot), cfg, seed=0, progress=False)
    assert prepared.training_owners(0).tolist() == [[i] for i in range(len(prepared.normals.images))]
    assert prepared.training_owners(1)[3].tolist() == [3, 4] and prepared.training_owners(1)[4].tolist() == [4, 3]
    # found in chunks of rows as in one piece, never itself
    means = prepared.normals_means
    nearest = nearest_rows(means, means, 3, themselves=True)
    assert torch.equal(nearest_rows(means, means, 3, chunk=4, themselves=True), nearest)
    assert not (nearest == torch.arange(len(nearest))[:, None]).any()
    g = generator_for(cfg).eval()
    own_only, twins_out = prepared.normals, prepared.training_normals(g, prepared.training_owners(1))
    assert prepared.training_normals(g, prepared.training_owners(0)) is own_only
    # with its own image alone left out, item 3 or 4 finds its twin's rows (the bank's sampler keeps
    # one copy of each duplicate row, of either owner); with its twin left out too, neither does
    for i, stride in enumerate(g.matched):
        f = prepared.normals.feats[STRIDES.index(stride)][3:5].float()
        d_own = (f - own_only.memories[i][3:5].float()).norm(dim=1)
        d_out = (f - twins_out.memories[i][3:5].float()).norm(dim=1)
        assert (d_own < 0.01).float().mean() > 0.2 and (d_out < 0.01).float().mean() < 0.02
        # leaving more rows out never brings any item's nearest row closer
        f_all = prepared.normals.feats[STRIDES.index(stride)].float()
        gap = ((f_all - twins_out.memories[i].float()).norm(dim=1) - (f_all - own_only.memories[i].float()).norm(dim=1))
        assert gap.min() > -0.05 and gap.mean() > 0
    with pytest.raises(ValueError, match="training_twins"):
        prepared.training_owners(9)
    # a station with few normals: each keeps at least half of the others in its memory, so a
    # training normal always has rows to match (with all others left out it would have none)
    few_normals = prepare(Split(normals[:6], split.few_shot), cfg, seed=0, progress=False)
    owners = few_normals.training_owners(5)
    assert owners.shape == (6, 1 + 2) and not (owners[:, 1:] == owners[:, :1]).any()
    # each one's memory comes from bank rows it is not matched without
    bank_owners = few_normals.banks.owners[0]
    for i, memory in enumerate(few_normals.training_normals(g, owners).memories[0]):
        rows = torch.cdist(memory.float().flatten(1).T, few_normals.banks.banks[0].float()).argmin(1)
        assert not torch.isin(bank_owners[rows], owners[i]).any()
    assert prepare(Split(normals[:2], split.few_shot), cfg, seed=0,
                   progress=False).training_owners(5).tolist() == [[0], [1]]
    model = train_kmdgan(Split(normals, split.few_shot), small_config(training_twins=1, iterations=3),
                         tmp_path / "m.safetensors", 0.1, progress=False, prepared=prepared)
    assert model.meta["training"]["training_twins"] == 1
    # without memory matching there is no memory to leave anything out of: said, not silent
    off = small_config(training_twins=1, iterations=2, modules={"memory_matching": False})
    with caplog.at_level("WARNING"):
        train_kmdgan(Split(normals, split.few_shot), off, tmp_path / "off.safetensors", 0.1, progress=False,
                     prepared=prepared)
    assert "model.training_twins 1 ignored" in caplog.text


def test_map_blends_geometric_keeps_the_masks_shape_max_paints_the_distance(trained):
    from edge_inspector.data.loader import iter_batches

    split, model = trained
    g = model.model
    assert g.arch.blend == "geometric"  # the default of a newly trained model
    images = next(iter(iter_batches(split.test_anomalous[:4], model.input_size, 4))).images
    x = torch.from_numpy(images)
    with torch.no_grad():
        feats = g.features(x)
        logits, distances = g.decode(x, feats, g.match(feats, model.banks))
        prob, dist = torch.sigmoid(logits), g.distance_map(distances, logits.shape[-2:])
        maps = {}
        for blend in ("geometric", "max", "none"):
            g.arch.map_blend = blend
            maps[blend] = g.anomaly_map(prob, distances)
        g.arch.map_blend = "geometric"
    assert torch.allclose(maps["geometric"], (prob * dist).sqrt())
    assert torch.equal(maps["max"], torch.maximum(prob, dist)) and torch.equal(maps["none"], prob)
    assert (maps["geometric"] <= maps["max"] + 1e-6).all()


def test_map_strides_choose_which_memory_distances_the_map_blend_uses(trained, tmp_path):
    from edge_inspector.data.loader import iter_batches
    from edge_inspector.model.kmdgan.artefact import load_artefact, save_artefact

    split, model = trained
    g = model.model
    assert g.arch.map_strides == [] and g.map_indices == [0, 1]  # the fixture's config names none: all
    images = next(iter(iter_batches(split.test_anomalous[:2], model.input_size, 2))).images
    x = torch.from_numpy(images)
    with torch.no_grad():
        feats = g.features(x)
        _, distances = g.decode(x, feats, g.match(feats, model.banks))
        size = x.shape[-2:]
        both = g.distance_map(distances, size)
        alone = [torch.sigmoid((torch.nn.functional.interpolate(d, size=size, mode="bilinear", align_corners=False)
                                - g.map_center[i]) / g.map_scale[i]) for i, d in enumerate(distances)]
        g.arch.map_strides = [8]
        fine = g.distance_map(distances, size)
        out = save_artefact(tmp_path / "m.safetensors", g, model.banks, model.threshold, model.input_size,
                            model.meta["training"], model.pixel_threshold, model.pixel_extent)
        g.arch.map_strides = []
    assert torch.allclose(both, (alone[0] + alone[1]) / 2) and torch.allclose(fine, alone[0])
    assert not torch.allclose(fine, both)
    assert load_artefact(out).model.arch.map_strides == [8]  # stored in the artefact, used on load


def test_map_strides_must_be_matched():
    from pydantic import ValidationError

    assert KMDGANArchitecture.from_config(KMDGANModelConfig(kind="kmdgan", map_strides=[8])).map_strides == [8]
    with pytest.raises(ValidationError, match="map_strides"):
        KMDGANModelConfig(kind="kmdgan", match_strides=[16], map_strides=[8])


@pytest.mark.parametrize("full", [False, True])
def test_full_resolution_puts_the_mask_head_at_the_input_resolution(backbone, full):
    model = KMDGANGenerator(KMDGANArchitecture(full_resolution=full), backbone)
    seen = []
    model.head.register_forward_hook(lambda module, inputs, output: seen.append(tuple(output.shape[-2:])))
    image = torch.rand(2, 3, 64, 64)
    banks = [torch.randn(50, backbone.channels[STRIDES.index(s)]) for s in model.matched]
    feats = model.features(image)
    logits, _ = model.decode(image, feats, model.match(feats, banks))
    assert logits.shape == (2, 1, 64, 64) and seen == [(64, 64) if full else (32, 32)]
    logits.mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("backbone."))


@pytest.mark.parametrize("option, part, default", [("full_resolution", "full", False),
                                                   ("self_contrast", "contrast", False),
                                                   ("global_context", "context", True)])
def test_a_decoder_option_comes_from_the_config_and_travels_in_the_artefact(product_set, tmp_path, option, part,
                                                                            default):
    cfg = small_config(**{option: True}, iterations=2)
    assert getattr(KMDGANArchitecture.from_config(cfg), option)
    assert getattr(KMDGANArchitecture.from_config(small_config()), option) is default
    assert not getattr(KMDGANArchitecture.from_config(small_config(**{option: False})), option)
    split = load_split("folder", product_set)
    model = train_kmdgan(split, cfg, tmp_path / "option.safetensors", 0.1, seed=1, progress=False)
    again = load_artefact(model.path)
    assert getattr(again.model, part) is not None and again.meta["architecture"][option] is True
    image = torch.rand(1, 3, 128, 128)
    assert torch.equal(model(image)[0], again(image)[0])
    # the exported graph carries the part too: ONNX Runtime agrees with torch on the product's images
    from edge_inspector.data.loader import iter_batches
    from edge_inspector.runtime.export import export_checked

    images = np.concatenate([b.images for b in iter_batches(split.test[:8], 128, 8)])
    figures = export_checked(again, tmp_path / "option.onnx", images)
    assert figures["verdicts_differing"] == 0 and figures["max_map_difference"] <= 1e-3


def test_self_contrast_sees_a_darker_region_against_its_own_image(backbone):
    from edge_inspector.model.kmdgan.modules import SelfContrast

    branch = SelfContrast(8)
    image = torch.full((1, 3, 128, 128), 0.6) + 0.02 * torch.rand(1, 1, 128, 128)
    image[..., :64, :64] -= 0.1  # a quarter of the part a little darker, with no edge inside it
    c = branch.contrasts(image, (32, 32))
    assert c.shape == (1, 6, 32, 32)
    inside, outside = c[0, :3, 4:12, 4:12], c[0, :3, 20:, 20:]
    assert (inside < -0.5).all() and (outside > 0.2).all()  # every grey window, in the image's spread
    # the same region on a brighter, more contrasted copy of the part: the same channels
    assert torch.allclose(branch.contrasts(image * 1.5 + 0.1, (32, 32))[:, :3], c[:, :3], atol=0.05)
    # in the network: the stride-4 decoder reads it, and it trains
    model = KMDGANGenerator(KMDGANArchitecture(self_contrast=True), backbone)
    banks = [torch.randn(50, backbone.channels[STRIDES.index(s)]) for s in model.matched]
    feats = model.features(image)
    logits, _ = model.decode(image, feats, model.match(feats, banks))
    logits.mean().backward()
    assert model.contrast.conv[0].weight.grad.abs().sum() > 0


def test_score_scale_gap_counts_each_part_from_normal_to_anomalous(trained):
    from edge_inspector.model.kmdgan.score_calibration import (
        calibrate_scores,
        outputs,
        outputs_of,
        part_scales,
        score_parts,
        synthetic_batches,
    )
    from edge_inspector.model.scoring import split_holdout

    split, fixture = trained
    model = load_artefact(fixture.path)  # a copy: calibration rewrites the model's levels
    g, banks, size = model.model, model.banks, model.input_size
    _, holdout = split_holdout(split.train_normal)
    normal = score_parts(g, *outputs(g, banks, holdout, size))
    few = outputs(g, banks, split.few_shot, size)
    spread = part_scales(g, banks, normal, holdout, few, size)
    assert g.arch.score_scale == "spread" and torch.allclose(spread, normal.std(0))  # the default, as before
    # the anomalies the gap is measured to: one synthetic anomaly on each held-out normal, and the few-shot
    anomalous = torch.cat([score_parts(g, *outputs_of(g, banks, synthetic_batches(holdout, size))),
                           score_parts(g, *few)])
    g.arch.score_scale = "gap"
    gap = part_scales(g, banks, normal, holdout, few, size)
    expected = torch.maximum(anomalous.median(0).values - normal.median(0).values, normal.std(0))
    assert torch.allclose(gap, expected)
    # the learned mask barely moves on normals: its unit grows many times over its spread
    assert gap[0] > 3 * spread[0]
    threshold = calibrate_scores(g, banks, holdout, split.few_shot, size, 0.1)
    assert torch.allclose(g.score_scale, gap)
    normal = score_parts(g, *outputs(g, banks, holdout, size))  # with the stride calibration chose
    scores = ((normal - g.score_center) / g.score_scale).sum(1).double()
    assert (scores >= threshold).double().mean() <= 0.1  # the threshold still from the held-out normals


def test_score_scale_comes_from_the_config_and_travels_in_the_artefact(trained, tmp_path):
    from pydantic import ValidationError

    assert KMDGANArchitecture.from_config(small_config(score_scale="gap")).score_scale == "gap"
    assert KMDGANArchitecture.from_config(small_config()).score_scale == "spread"
    with pytest.raises(ValidationError, match="score_scale"):
        small_config(score_scale="range")
    _, fixture = trained
    model = load_artefact(fixture.path)
    model.model.arch.score_scale = "gap"
    model.model.score_scale[:] = torch.tensor([0.7, 3.0])
    again = _saved_and_loaded(model, model.threshold, tmp_path / "gap.safetensors").model
    assert again.arch.score_scale == "gap" and torch.equal(again.score_scale, torch.tensor([0.7, 3.0]))


def test_threshold_rule_comes_from_the_config_sets_the_threshold_and_travels_in_the_artefact(trained, tmp_path):
    from pydantic import ValidationError

    from edge_inspector.data import load_split
    from edge_inspector.data.synthetic_product import write_product_set
    from edge_inspector.model.kmdgan.score_calibration import calibrate_scores, outputs, score_parts
    from edge_inspector.model.scoring import split_holdout, threshold_by_rule

    assert KMDGANArchitecture.from_config(small_config(threshold_rule="tail")).threshold_rule == "tail"
    assert KMDGANArchitecture.from_config(small_config()).threshold_rule == "empirical"
    with pytest.raises(ValidationError, match="threshold_rule"):
        small_config(threshold_rule="largest")
    split, fixture = trained
    model = load_artefact(fixture.path)  # a copy: calibration rewrites the model's levels
    g, banks, size = model.model, model.banks, model.input_size
    # 700 more good parts of the same product, of which every 10th is held out: enough for a tail
    more = load_split("folder", write_product_set(tmp_path / "more", normals=700, per_defect=1, size=128, seed=9))
    _, holdout = split_holdout(more.train_normal)
    g.arch.threshold_rule = "tail"
    threshold = calibrate_scores(g, banks, holdout, split.few_shot, size, 0.05)
    scores = ((score_parts(g, *outputs(g, banks, holdout, size)) - g.score_center) / g.score_scale).sum(1).numpy()
    assert len(scores) >= 44 and g.threshold_record["rule"] == "tail"
    assert threshold == pytest.approx(threshold_by_rule(scores, 0.05, "tail")[0], rel=1e-5)
    assert threshold != pytest.approx(threshold_by_rule(scores, 0.05, "empirical")[0], rel=1e-5)
    again = _saved_and_loaded(model, threshold, tmp_path / "tail.safetensors")
    assert again.model.arch.threshold_rule == "tail" and again.threshold == pytest.approx(threshold)


def test_mask_score_floor_leaves_faint_mask_responses_out_of_the_score_and_exports(trained, tmp_path):
    from pydantic import ValidationError


    assert KMDGANArchitecture.from_config(small_config(mask_score_floor=0.5)).mask_score_floor == 0.5
    assert KMDGANArchitecture.from_config(small_config()).mask_score_floor == 0.0  # the default (docs/kmdgan.md)
    with pytest.raises(ValidationError, match="mask_score_floor"):
        small_config(mask_score_floor=1.0)
    split, fixture = trained
    model = load_artefact(fixture.path)
    g = model.model
    prob = torch.full((2, 1, 16, 16), 0.3)  # a faint response everywhere on image 0
    prob[1, 0, :4, :4] = 0.8  # and a defect of 16 pixels on image 1
    g.arch.mask_score_floor = 0.0
    before = g.score_parts(prob, [])[:, 0]
    g.arch.mask_score_floor = 0.5
    after = g.score_parts(prob, [])[:, 0]
    assert before[0] == pytest.approx(0.3) and after[0] == 0.0
    assert after[1] == pytest.approx(16 * 0.8 / 100) and before[1] > after[1]  # top 100: 16 at 0.8, 84 at 0
    again = _saved_and_loaded(model, model.threshold, tmp_path / "floor.safetensors")
    assert again.model.arch.mask_score_floor == 0.5
    _exports_as_torch_scores(again, split, tmp_path / "floor.onnx")  # the graph applies the floor as torch does


def test_score_from_map_scores_the_blended_map_and_exports(trained, tmp_path):
    from edge_inspector.model.kmdgan.score_calibration import outputs

    assert KMDGANArchitecture.from_config(small_config(score_from_map=True)).score_from_map
    assert not KMDGANArchitecture.from_config(small_config()).score_from_map  # the default, as before
    split, fixture = trained
    model = load_artefact(fixture.path)
    g = model.model
    prob, dists = outputs(g, model.banks, split.test[:6], model.input_size)
    mask_part = g.score_parts(prob, dists)[:, 0]
    g.arch.score_from_map = True
    map_part = g.score_parts(prob, dists)[:, 0]
    blended = g.anomaly_map(prob, dists)
    expected = blended.flatten(1).topk(g.arch.top_k, dim=1).values.mean(1)
    assert torch.allclose(map_part, expected) and not torch.allclose(map_part, mask_part)
    # the service's forward builds the map once and scores from it: the same score as built apart
    amap, score = g.map_and_score(prob, dists)
    assert torch.allclose(amap, blended[:, 0]) and torch.allclose(score, g.score(prob, dists))
    again = _saved_and_loaded(model, model.threshold, tmp_path / "map.safetensors")
    assert again.model.arch.score_from_map
    _exports_as_torch_scores(again, split, tmp_path / "map.onnx")


def test_mask_score_logit_has_no_ceiling_refuses_a_floor_and_exports(trained, tmp_path):
    from pydantic import ValidationError


    assert KMDGANArchitecture.from_config(small_config(mask_score="logit")).mask_score == "logit"
    assert KMDGANArchitecture.from_config(small_config()).mask_score == "probability"  # the default, as before
    with pytest.raises(ValidationError, match="mask_score"):
        small_config(mask_score="logit", mask_score_floor=0.5)
    split, fixture = trained
    model = load_artefact(fixture.path)
    g = model.model
    prob = torch.full((3, 1, 16, 16), 0.5)
    prob[1, 0, :10, :10] = 0.999  # a confident mask response of 100 pixels
    prob[2, 0, :10, :10] = 1.0  # float32's sigmoid of a large logit: clamped, not infinite
    probability = g.score_parts(prob, [])[:, 0]
    g.arch.mask_score = "logit"
    logit = g.score_parts(prob, [])[:, 0]
    assert probability[1] == pytest.approx(0.999) and logit[0] == pytest.approx(0.0, abs=1e-6)
    assert logit[1] == pytest.approx(math.log(0.999 / 0.001), rel=1e-3)  # 6.9: the probability's 0.999 unbounded
    assert torch.isfinite(logit[2]) and logit[2] > logit[1]
    again = _saved_and_loaded(model, model.threshold, tmp_path / "logit.safetensors")
    assert again.model.arch.mask_score == "logit"
    # an artefact whose metadata pairs the two is refused on load
    again.model.arch.mask_score_floor = 0.5
    with pytest.raises(UserError, match="mask_score"):
        _saved_and_loaded(again, again.threshold, tmp_path / "both.safetensors")
    again.model.arch.mask_score_floor = 0.0
    _exports_as_torch_scores(again, split, tmp_path / "logit.onnx")  # the graph scores the logits as torch does


def test_mirror_map_ships_the_larger_of_both_ways_round_keeps_the_score_and_exports(trained, tmp_path):
    from edge_inspector.data.loader import iter_batches

    assert KMDGANArchitecture.from_config(small_config(mirror_map=True)).mirror_map
    assert not KMDGANArchitecture.from_config(small_config()).mirror_map  # the default, one pass
    split, fixture = trained
    model = load_artefact(fixture.path)
    g = model.model
    images = torch.from_numpy(np.concatenate([b.images for b in iter_batches(split.test[:8], 128, 8)]))
    with torch.no_grad():
        plain_map, plain_score = model(images)
        mirrored_map, _ = model(images.flip(-1))
        g.arch.mirror_map = True
        both_map, both_score = model(images)
    assert torch.equal(both_score, plain_score)  # the verdict is the image's own
    assert torch.allclose(both_map, torch.maximum(plain_map, mirrored_map.flip(-1)))
    assert (both_map > plain_map + 1e-3).any()  # the mirror image adds somewhere: not one pass twice
    again = _saved_and_loaded(model, model.threshold, tmp_path / "mirror.safetensors")
    assert again.model.arch.mirror_map
    _exports_as_torch_scores(again, split, tmp_path / "mirror.onnx")  # the mirror's map within the parity's bound


def _exports_as_torch_scores(model, split, path) -> None:
    """The exported graph matches torch on 8 test images: export_checked's map and score parity,
    no verdict differing, scores within 1e-3."""
    from edge_inspector.data.loader import iter_batches
    from edge_inspector.runtime.export import export_checked

    images = np.concatenate([b.images for b in iter_batches(split.test[:8], 128, 8)])
    figures = export_checked(model, path, images)
    assert figures["verdicts_differing"] == 0 and figures["max_score_difference"] <= 1e-3


def _saved_and_loaded(model, threshold: float, path):
    """The loaded model written again with its present settings and the given threshold, read back."""
    from edge_inspector.model.kmdgan.artefact import save_artefact

    save_artefact(path, model.model, model.banks, threshold, model.input_size, model.meta["training"],
                  model.pixel_threshold, model.pixel_extent)
    return load_artefact(path)


def test_stride_4_matching_trains_exports_and_keeps_the_stride_8_gate(product_set, tmp_path):
    from edge_inspector.data import load_split
    from edge_inspector.data.loader import iter_batches
    from edge_inspector.model.kmdgan.training import train_kmdgan
    from edge_inspector.runtime.export import export_checked

    split = load_split("folder", product_set)
    cfg = small_config(match_strides=[8, 4, 16], bank_size=500, iterations=4)
    model = train_kmdgan(split, cfg, tmp_path / "s4.safetensors", target_false_reject_rate=0.1, seed=0,
                         progress=False)
    g = model.model.eval()
    assert g.matched == [4, 8, 16] and [b.shape[1] for b in model.banks] == [24, 40, 112]
    assert g.arch.position_sides == [32, 16, 8]  # 128 px at strides 4, 8, 16
    # the modulation reads the stride-8 distance, as it does without stride 4: a change to the
    # stride-4 distance alone leaves the decoder's logits as they are
    image = torch.from_numpy(next(iter_batches(split.test[:2], 128, 2)).images)
    with torch.no_grad():
        feats = g.features(image)
        memories = g.match(feats, model.banks)
        logits, distances = g.decode(image, feats, memories)
        g.position_4.mul_(2.0)  # the stride-4 distance halved everywhere
        again, moved = g.decode(image, feats, memories)
        g.position_4.div_(2.0)
    assert torch.allclose(moved[0], distances[0] / 2) and torch.equal(moved[1], distances[1])
    assert torch.allclose(again, logits)
    images = np.concatenate([b.images for b in iter_batches(split.test[:8], 128, 8)])
    figures = export_checked(load_artefact(tmp_path / "s4.safetensors"), tmp_path / "s4.onnx", images)
    assert figures["verdicts_differing"] == 0 and figures["max_score_difference"] <= 1e-3


def test_global_context_lets_a_location_read_its_whole_row_and_image():
    from edge_inspector.model.kmdgan.modules import GlobalContext, _bin_means

    x = torch.rand(2, 8, 16, 16)
    for bins in GlobalContext.BINS:  # the exportable reshape is the adaptive pooling where the grid divides
        assert torch.allclose(_bin_means(x, bins), F.adaptive_avg_pool2d(x, bins), atol=1e-6)
    block = GlobalContext(8).eval()
    assert block(x[..., :15, :15]).shape == (2, 8, 15, 15)  # a map the bins do not divide (adaptive pooling)
    x.requires_grad_(True)
    block(x)[0, :, 3, 0].sum().backward()
    reach = x.grad[0].abs().sum(0)
    # row 3's left end hears row 3's right end (a 1x1 conv alone would hear only itself), more than
    # a far location of another row, which it hears only through the image's and bins' means
    assert reach[3, 15] > reach[12, 15] > 0
