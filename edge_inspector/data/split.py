"""The benchmark protocol's split rule (docs/datasets.md), implemented once and used by every layout."""

from __future__ import annotations

from collections.abc import Iterable

from edge_inspector.data.sample import Sample, Split

TEST_EVERY = 5  # every 5th normal (index a multiple of 5) goes to test
FEW_SHOT_MAX = 10  # the protocol's few real anomalies


def _by_name(samples: Iterable[Sample]) -> list[Sample]:
    # plain lexicographic order of the file name, as the protocol says
    return sorted(samples, key=lambda s: s.image.name)


def _by_type(anomalies: Iterable[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = {}
    for s in anomalies:
        groups.setdefault(s.defect_type, []).append(s)
    return {t: _by_name(groups[t]) for t in sorted(groups)}


def take_few_shot(anomalies: Iterable[Sample]) -> tuple[list[Sample], list[Sample]]:
    """At most 10 real anomalies, taken round-robin over the defect types in name order (the first of
    each type, then the second of each, ...), so one defect type still gives 10; with five or more
    types this is the first 2 of each of the first five. Never more than half of the anomalies
    (rounded up): the rest are what the test part measures.

    Returns (few_shot, rest); the rest keeps the per-type name order.
    """
    groups = list(_by_type(anomalies).values())
    limit = min(FEW_SHOT_MAX, (sum(map(len, groups)) + 1) // 2)
    chosen: set[int] = set()
    few: list[Sample] = []
    rank = 0
    while len(few) < limit and any(rank < len(g) for g in groups):
        for g in groups:
            if rank < len(g) and len(few) < limit:
                few.append(g[rank])
                chosen.add(id(g[rank]))
        rank += 1
    order = {id(s): i for i, s in enumerate(few)}
    few.sort(key=lambda s: (next(t for t, g in enumerate(groups) if s in g), order[id(s)]))
    rest = [s for g in groups for s in g if id(s) not in chosen]
    return few, rest


def hold_out_few_shot(few_shot: Iterable[Sample], fold: int = 1) -> tuple[list[Sample], list[Sample]]:
    """(kept, held out): every second few-shot defect of each type, in the given order, is held out
    as validation the training never sees (tools/validate_defects.py). fold 1: a type's second,
    fourth... are held out and its first kept; fold 0: the other half (two folds cover them all)."""
    seen: dict[str, int] = {}
    kept: list[Sample] = []
    held: list[Sample] = []
    for s in few_shot:
        rank = seen.get(s.defect_type, 0)
        seen[s.defect_type] = rank + 1
        (held if rank % 2 == fold else kept).append(s)
    return kept, held


def protocol_split(normals: Iterable[Sample], anomalies: Iterable[Sample]) -> Split:
    """Split a layout with one pool of normals and anomalies (folder layout, Magnetic Tile)."""
    ordered = _by_name(normals)
    few, rest = take_few_shot(anomalies)
    return Split(
        train_normal=[s for i, s in enumerate(ordered) if i % TEST_EVERY != 0],
        few_shot=few,
        test_normal=[s for i, s in enumerate(ordered) if i % TEST_EVERY == 0],
        test_anomalous=rest,
    )


def split_with_test_set(train_normals: Iterable[Sample], test: Iterable[Sample]) -> Split:
    """Split a layout that brings its own test set (MVTec AD, VisA): few-shot comes out of it."""
    test = list(test)
    few, rest = take_few_shot(s for s in test if s.label == 1)
    return Split(
        train_normal=_by_name(train_normals),
        few_shot=few,
        test_normal=_by_name(s for s in test if s.label == 0),
        test_anomalous=rest,
    )
