from pathlib import Path

from edge_inspector.data import load_split
from edge_inspector.data.sample import Sample
from edge_inspector.data.split import hold_out_few_shot, protocol_split, split_with_test_set


def normals(n):
    return [Sample(Path(f"good/img_{i:03d}.png"), None, 0, "good") for i in range(n)]


def anomalies(kind, n):
    return [Sample(Path(f"{kind}/{kind}_{i:03d}.png"), None, 1, kind) for i in range(n)]


def test_every_fifth_normal_goes_to_test_in_name_order():
    pool = list(reversed(normals(12)))  # order of arrival must not matter
    split = protocol_split(pool, [])
    assert [s.image.name for s in split.test_normal] == ["img_000.png", "img_005.png", "img_010.png"]
    assert len(split.train_normal) == 9
    assert not set(split.train_normal) & set(split.test_normal)


def test_few_shot_is_ten_taken_round_robin_over_the_types():
    pool = anomalies("a", 5) + anomalies("b", 1) + anomalies("c", 3)
    split = protocol_split(normals(5), pool)
    # at most half of the 9 (rounded up) so that some are left to test: rounds a0 b0 c0, then a1 c1
    assert [s.image.name for s in split.few_shot] == ["a_000.png", "a_001.png", "b_000.png", "c_000.png", "c_001.png"]
    assert len(split.test_anomalous) == 4
    many = [s for k in "abcdefgh" for s in anomalies(k, 3)]
    chosen = protocol_split(normals(5), many).few_shot
    assert [s.image.name for s in chosen] == ["a_000.png", "a_001.png", "b_000.png", "b_001.png", "c_000.png",
                                             "d_000.png", "e_000.png", "f_000.png", "g_000.png", "h_000.png"]
    one_type = protocol_split(normals(5), anomalies("pit", 24))
    assert [s.image.name for s in one_type.few_shot] == [f"pit_{i:03d}.png" for i in range(10)]  # not just 2
    assert len(one_type.test_anomalous) == 14
    five = protocol_split(normals(5), [s for k in "abcde" for s in anomalies(k, 4)])
    assert [s.image.name for s in five.few_shot] == [f"{k}_00{i}.png" for k in "abcde" for i in (0, 1)]


def test_layout_with_own_test_set_takes_few_shot_from_it():
    test = normals(4) + anomalies("x", 4)
    split = split_with_test_set(normals(7), test)
    assert len(split.train_normal) == 7
    assert len(split.few_shot) == 2 and len(split.test_anomalous) == 2 and len(split.test_normal) == 4


def test_magnetic_tile_split_matches_protocol(magnetic_tile):
    split = load_split("magnetic-tile", magnetic_tile)
    assert split.sizes() == {"train_normal": 761, "few_shot": 10, "test_normal": 191, "test_anomalous": 382}
    assert all(s.mask is not None and s.mask.is_file() for s in split.few_shot + split.test_anomalous)
    assert {s.defect_type for s in split.few_shot} == {"blowhole", "break", "crack", "fray", "uneven"}


def test_validation_holds_out_every_second_few_shot_defect_of_each_type():
    pool = anomalies("a", 10) + anomalies("b", 10) + anomalies("c", 1)  # few-shot: a0-a4, b0-b3, c0
    split = protocol_split(normals(5), pool)
    kept, held = hold_out_few_shot(split.few_shot)
    assert [s.image.name for s in held] == ["a_001.png", "a_003.png", "b_001.png", "b_003.png"]
    # every type keeps its first defect for training, a type with one defect keeps it
    assert [s.image.name for s in kept] == ["a_000.png", "a_002.png", "a_004.png", "b_000.png", "b_002.png",
                                         "c_000.png"]
    assert set(kept).isdisjoint(held) and len(kept) + len(held) == len(split.few_shot)


def test_the_other_fold_holds_out_the_defects_the_first_kept():
    pool = anomalies("a", 10) + anomalies("b", 10) + anomalies("c", 1)
    split = protocol_split(normals(5), pool)
    kept, held = hold_out_few_shot(split.few_shot, fold=0)
    assert [s.image.name for s in held] == ["a_000.png", "a_002.png", "a_004.png", "b_000.png", "b_002.png",
                                         "c_000.png"]
    assert held == hold_out_few_shot(split.few_shot, fold=1)[0]  # the two folds swap roles
    assert set(kept).isdisjoint(held) and len(kept) + len(held) == len(split.few_shot)
