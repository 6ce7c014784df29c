"""The benchmark protocol's split rule (docs/datasets.md), implemented once and used by every layout."""

from __future__ import annotations

from collections.abc import Iterable

from edge_inspector.data.sample import Sample, Split

TEST_EVERY = 5  # every 5th normal (index a multiple of 5) goes to test
FEW_SHOT_PER_TYPE = 2
FEW_SHOT_MAX = 10


def _by_name(samples: Iterable[Sample]) -> list[Sample]:
    # plain lexicographic order of the file name, as the protocol says
    return sorted(samples, key=lambda s: s.image.name)


def _by_type(anomalies: Iterable[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = {}
    for s in anomalies:
        groups.setdefault(s.defect_type, []).append(s)
    return {t: _by_name(groups[t]) for t in sorted(groups)}


def take_few_shot(anomalies: Iterable[Sample]) -> tuple[list[Sample], list[Sample]]:
    """First 2 images of each defect type (types in name order), at most 10 in all.

    Returns (few_shot, rest); the rest keeps the per-type name order.
    """
    few, rest = [], []
    for samples in _by_type(anomalies).values():
        for i, s in enumerate(samples):
            if i < FEW_SHOT_PER_TYPE and len(few) < FEW_SHOT_MAX:
                few.append(s)
            else:
                rest.append(s)
    return few, rest


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
