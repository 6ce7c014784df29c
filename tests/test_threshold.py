import numpy as np
import pytest
import torch

from edge_inspector.model.scoring import choose_score_mode, split_check_normals, split_holdout, threshold_from_normals


def test_threshold_passes_all_but_the_allowed_share():
    scores = np.arange(100, dtype=float)  # 0..99
    t = threshold_from_normals(scores, 0.05)  # 5 of 100 may be rejected: 95..99
    assert (scores >= t).sum() == 5 and t > 94
    t = threshold_from_normals(scores, 0.001)  # none may be rejected
    assert (scores >= t).sum() == 0 and t == pytest.approx(99)


def test_threshold_needs_scores():
    with pytest.raises(ValueError):
        threshold_from_normals(np.array([]), 0.01)


def test_holdout_is_every_tenth_and_disjoint():
    fit, held = split_holdout(list(range(35)))
    assert held == [9, 19, 29] and len(fit) == 32 and not set(fit) & set(held)


def test_check_normals_are_every_tenth_and_never_a_held_out_one():
    # validation's check normals: none of them trains, and none is one split_holdout holds out
    train, check = split_check_normals(list(range(35)))
    assert check == [4, 14, 24, 34] and len(train) == 31 and not set(train) & set(check)
    assert not set(check) & set(split_holdout(list(range(35)))[1])
    _, held_after = split_holdout(train)  # what the validation model then holds out for its threshold
    assert held_after == [10, 21, 32] and not set(held_after) & set(check)


def test_score_mode_chosen_by_separation():
    g = torch.Generator().manual_seed(0)
    normal = torch.rand(20, 50, generator=g)
    # anomalies differ in their mean level, not in their single highest patch
    anomalous = torch.rand(6, 50, generator=g) * 0.2 + 0.7
    anomalous[:, 0] = 0.99
    normal[:, 0] = 1.0
    mode, aucs = choose_score_mode(normal, anomalous)
    assert mode == "mean" and aucs["mean"] == 1.0 and aucs["max"] < 0.5
    assert choose_score_mode(normal, None) == ("max", {})


def test_the_false_reject_bound_says_what_few_held_out_normals_cannot():
    from edge_inspector.model.scoring import rate_upper_bound

    assert rate_upper_bound(0, 76) == pytest.approx(0.048, abs=0.001)  # 0 of 76: up to 4.8 %
    assert rate_upper_bound(0, 1000) < 0.004 < rate_upper_bound(1, 76)
    assert rate_upper_bound(5, 10) < 1.0 and rate_upper_bound(0, 0) == 1.0


def test_the_tail_of_item_scores_places_the_threshold_on_the_maximum_of_many():
    from edge_inspector.model.scoring import max_threshold_from_tail

    rng = np.random.default_rng(0)
    n, target = 100, 0.01  # frames of 100 tiles, 1 % of good frames may be rejected
    truth = -np.log(-np.log((1 - target) ** (1 / n)))  # Gumbel tiles: P(max of n >= truth) = target
    rejected = lambda t: 1 - np.exp(-n * np.exp(-t))  # noqa: E731 - the share of good frames at or above t
    # 200 stations, each with 5 held-out frames: the largest of their 5 maxima against the tail fit
    frames = [threshold_from_normals(rng.gumbel(0, 1, (5, n)).max(axis=1), target) for _ in range(200)]
    tails = []
    for _ in range(200):
        held = rng.gumbel(0, 1, (5, n))  # 5 frames of independent tiles: the estimated count stays near n
        tails.append(max_threshold_from_tail(held.ravel(), n, target, held.max(axis=1))[0])
    assert np.mean([rejected(t) for t in frames]) > 0.10  # the few maxima: a 1 % target rejects over 10 %
    assert np.mean([rejected(t) for t in tails]) < 0.04
    assert np.sqrt(np.mean((np.array(tails) - truth) ** 2)) < 0.6 * np.sqrt(np.mean((np.array(frames) - truth) ** 2))
    with pytest.raises(ValueError):
        max_threshold_from_tail(rng.gumbel(0, 1, 50), n, target)  # 2 scores above the quantile: no fit


def test_tiles_that_move_together_count_as_fewer_and_the_threshold_comes_down():
    from edge_inspector.model.scoring import max_threshold_from_tail

    rng = np.random.default_rng(1)
    n, target = 100, 0.01
    # each frame's 100 tiles are 10 independent values, each repeated over 10 tiles (shared light)
    held = np.repeat(rng.gumbel(0, 1, (20, 10)), 10, axis=1)
    t_assumed, _ = max_threshold_from_tail(held.ravel(), n, target)
    t_fitted, used = max_threshold_from_tail(held.ravel(), n, target, held.max(axis=1))
    assert 4 < used < 30 and t_fitted < t_assumed  # about 10 independent tiles, not 100
    new = np.repeat(rng.gumbel(0, 1, (20000, 10)), 10, axis=1).max(axis=1)
    assert (new >= t_fitted).mean() < 0.05 and (new >= t_assumed).mean() < (new >= t_fitted).mean()


def test_held_out_rejections_compare_as_the_service_does_in_float64():
    from edge_inspector.model.scoring import held_out_rejections, rate_upper_bound

    scores = np.array([1.2345678, 3.3, 2.7], dtype=np.float32)  # float32, as a model returns them
    t = threshold_from_normals(scores, 0.01)  # the next float64 above 3.3: every held-out score passes
    assert held_out_rejections(scores, t) == (0, rate_upper_bound(0, 3))
    assert float(scores.max()) < t  # the service's comparison (Python floats)
    assert held_out_rejections(scores, 2.7) == (2, rate_upper_bound(2, 3))


def test_the_tail_rule_is_not_set_by_one_odd_held_out_normal_and_falls_back_when_too_few():
    from edge_inspector.model.scoring import threshold_by_rule

    rng = np.random.default_rng(2)
    target = 0.01
    truth = -np.log(-np.log(1 - target))  # Gumbel scores: P(score >= truth) = target
    empirical, tail = [], []
    for _ in range(200):  # 200 stations of 76 held-out normals, one of them far off (a smudge, a glare)
        held = np.r_[rng.gumbel(0, 1, 75), truth + 6.0]
        empirical.append(threshold_by_rule(held, target, "empirical"))
        tail.append(threshold_by_rule(held, target, "tail"))
    assert {rule for _, rule in empirical} == {"empirical"} and {rule for _, rule in tail} == {"tail"}
    empirical, tail = np.array([t for t, _ in empirical]), np.array([t for t, _ in tail])
    assert np.all(empirical > truth + 6.0)  # above the odd one: every station sits 6 above the 99th percentile
    assert np.median(tail) < truth + 3.0 and np.all(tail < empirical)
    rejected = np.exp(-np.exp(-tail))  # the share of good Gumbel scores each tail threshold passes
    assert np.mean(1 - rejected) < 0.03  # near the 1 % target, not far above it
    assert threshold_by_rule(rng.gumbel(0, 1, 56), target, "tail")[1] == "tail"  # its top 11 make the tail
    few = rng.gumbel(0, 1, 40)  # too few for a fit
    assert threshold_by_rule(few, target, "tail") == (threshold_from_normals(few, target), "empirical")
    with pytest.raises(ValueError, match="unknown"):
        threshold_by_rule(few, target, "largest")
