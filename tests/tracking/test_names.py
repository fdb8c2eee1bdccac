"""Metric names: each function gives its documented key, and no two names collide."""

import pytest

from distmeta.tracking import names

CONSTANTS = {k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (names.meta_metric("preadapt_loss"), "meta/preadapt_loss"),
        (names.meta_metric("preadapt_acc"), "meta/preadapt_acc"),
        (names.val_score("acc"), "meta/val_acc"),
        (names.val_score("mse"), "meta/val_mse"),
        (names.val_score_after("mse", 10), "meta/val_mse_step10"),
        (names.shard_compute_ms(0), "shard/0/compute_ms"),
        (names.shard_compute_ms(12), "shard/12/compute_ms"),
        (names.shard_tasks_per_s(3), "shard/3/tasks_per_s"),
        (names.family_metric("sine", "loss"), "family/sine/loss"),
        (names.family_metric("glyphs", "grad_share"), "family/glyphs/grad_share"),
        (names.step_time_ms("shard_wait"), "time/shard_wait_ms"),
        (names.shard_system(1, "rss_megabytes"), "system/shard_1/rss_megabytes"),
        (names.fault_tag(names.FAULT_ACTOR_RESTARTS), "distmeta.fault.actor_restarts"),
    ],
)
def test_functions_give_the_documented_keys(key, expected):
    """Each name function puts its argument(s) in the documented place under its prefix."""
    assert key == expected


def test_constants_have_their_prefixes():
    """The constants are the documented keys; each lives under one of the documented prefixes."""
    assert names.META_LOSS == "meta/loss"
    assert names.META_LR == "optim/lr"
    assert names.META_GRAD_NORM == "optim/grad_norm"
    assert names.THROUGHPUT_TASKS_PER_S == "throughput/tasks_per_s"
    assert names.FIRST_STEP_MS == "time/first_step_ms"
    assert names.SYSTEM == "system/"  # MLflow's: its UI shows these in the System metrics tab
    prefixes = ("meta/", "optim/", "throughput/", "time/", "fault/", "wire/", names.SYSTEM)
    metric_constants = {k: v for k, v in CONSTANTS.items() if k != "STEP_PARTS"}
    assert metric_constants, "the module defines metric-name constants"
    for name, key in metric_constants.items():
        assert key.startswith(prefixes), name
        assert key == key.strip() and " " not in key, name


def test_no_two_constants_collide():
    """Every constant is its own MLflow key (a copy-paste duplicate would merge two series)."""
    keys = [v for k, v in CONSTANTS.items() if k != "STEP_PARTS"]
    assert len(keys) == len(set(keys))
    assert set(names.FAULTS) == {v for v in keys if v.startswith("fault/")} and len(names.FAULTS) == len(set(names.FAULTS))


def test_every_step_part_makes_a_distinct_time_key():
    """Each part of a meta-step's time gets its own ``time/<part>_ms`` series."""
    keys = [names.step_time_ms(part) for part in names.STEP_PARTS]
    assert len(names.STEP_PARTS) == len(set(names.STEP_PARTS))
    assert len(keys) == len(set(keys)) == len(names.STEP_PARTS)
    assert all(k.startswith("time/") and k.endswith("_ms") for k in keys)
    assert set(keys).isdisjoint(CONSTANTS.values())


def test_keys_from_different_functions_do_not_collide():
    """Per-shard, per-family, validation and timing keys never shadow a constant or each other."""
    keys = [
        *(v for k, v in CONSTANTS.items() if k != "STEP_PARTS"),
        *(names.step_time_ms(p) for p in names.STEP_PARTS),
        *(f(k) for k in range(4) for f in (names.shard_compute_ms, names.shard_tasks_per_s)),
        *(names.val_score(s) for s in ("acc", "mse")),
        *(names.val_score_after(s, k) for s in ("acc", "mse") for k in (1, 5, 10)),
        *(names.family_metric(f, n) for f in ("sine", "glyphs") for n in ("loss", "tasks_seen", "grad_share")),
        *(names.meta_metric(m) for m in ("preadapt_loss", "query_acc", "preadapt_acc")),
    ]
    assert len(keys) == len(set(keys))
