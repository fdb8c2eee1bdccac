from collections import Counter

import pytest

from distmeta.tasks import TRAIN, VALIDATION
from distmeta.tasks.mixture import Mixture, owner_plan, unit_owners


def test_family_draws_follow_the_weights_and_are_pure_functions_of_the_key():
    m = Mixture(("sine", "linear", "quadratic"), (2.0, 1.0, 1.0))
    draws = [m.family_of(0, TRAIN, s, i) for s in range(200) for i in range(25)]
    counts = Counter(draws)
    assert abs(counts[0] / len(draws) - 0.5) < 0.03 and abs(counts[1] / len(draws) - 0.25) < 0.03
    assert draws == [m.family_of(0, TRAIN, s, i) for s in range(200) for i in range(25)]
    assert draws != [m.family_of(0, VALIDATION, s, i) for s in range(200) for i in range(25)]
    assert Mixture(("sine",), (1.0,)).family_of(0, TRAIN, 3, 4) == 0


def test_group_keeps_order_and_covers_the_indices():
    m = Mixture(("a", "b"), (1.0, 1.0))
    groups = m.group(1, TRAIN, 0, range(30))
    assert sorted(i for idx in groups.values() for i in idx) == list(range(30))
    assert all(idx == sorted(idx) for idx in groups.values()) and set(groups) == {0, 1}


@pytest.mark.parametrize(
    "families, shards, owners",
    [
        (2, 2, [[0], [1]]),
        (2, 4, [[0, 2], [1, 3]]),
        (3, 2, [[0], [1], [0]]),
        (2, 0, [[0], [0]]),
        (2, 3, [[0, 2], [1]]),
    ],
)
def test_unit_owners(families, shards, owners):
    assert unit_owners(families, shards) == owners


@pytest.mark.parametrize("partitions", [1, 3])
def test_owner_plan_sends_each_task_to_an_owner_of_its_unit(partitions):
    m = Mixture(("a", "b", "c"), (1.0, 2.0, 1.0))
    for shards in (1, 2, 3, 5, 11):
        plan = owner_plan(m, 4, TRAIN, 7, 40, shards, partitions)
        assert sorted(i for p in plan for i in p) == list(range(40))
        owners = unit_owners(3 * partitions, shards)
        for k, idx in enumerate(plan):
            assert all(k in owners[m.unit_of(4, TRAIN, 7, i, partitions)] for i in idx)


def test_class_partition_draws_are_uniform_and_keep_the_family_draw():
    m = Mixture(("a", "b"), (1.0, 3.0))
    keys = [(s, i) for s in range(100) for i in range(25)]
    units = [m.unit_of(0, TRAIN, s, i, 4) for s, i in keys]
    assert [u // 4 for u in units] == [m.family_of(0, TRAIN, s, i) for s, i in keys]
    parts = Counter(u % 4 for u in units)
    assert all(abs(parts[p] / len(units) - 0.25) < 0.03 for p in range(4))


def test_bad_mixtures_are_refused():
    with pytest.raises(ValueError, match="must differ"):
        Mixture(("a", "a"), (1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        Mixture(("a", "b"), (1.0, 0.0))


def test_stratified_sampling_takes_the_families_in_turn_so_every_meta_batch_holds_each_alike():
    m = Mixture(("sine", "linear", "parabola"), (1.0, 1.0, 1.0), stratified=True)
    for step in (0, 7):
        groups = m.group(5, TRAIN, step, range(75))
        assert {f: len(idx) for f, idx in groups.items()} == {0: 25, 1: 25, 2: 25}
        assert groups[1][:3] == [1, 4, 7]  # a pure function of the index: the same on any shard
    weighted = Mixture(("sine", "linear", "parabola"), (1.0, 1.0, 1.0))
    counts = [len(v) for v in weighted.group(5, TRAIN, 0, range(75)).values()]
    assert counts != [25, 25, 25]  # drawn by weight, the counts vary
