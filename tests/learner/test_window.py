"""Logging windows: each logged point is the mean over the steps (or tasks) that measured it."""

from __future__ import annotations

import dataclasses

import torch

from distmeta.learner.window import Window
from distmeta.shard.aggregate import Aggregate
from distmeta.shard.result import ShardResult
from distmeta.tracking import names


def _agg(loss: float, counts: dict[str, int], family_loss: dict[str, float], extra: dict | None = None) -> Aggregate:
    metrics = {"loss": loss, **(extra or {})}
    return Aggregate(torch.tensor([3.0, 4.0]), sum(counts.values()), counts, metrics,
                     {f: {"loss": v} for f, v in family_loss.items()}, {f: 1.0 / len(counts) for f in counts}, 5.0)  # fmt: skip


def _result(shard: int, tasks: int, seconds: float) -> ShardResult:
    return ShardResult(shard=shard, step=0, weights_version=0, family_grads={}, family_counts={"sine": tasks},
                       family_metrics={}, seconds=seconds)  # fmt: skip


def test_window_means_per_step_per_task_and_per_measuring_step():
    w = Window(traffic_from=(1_000_000, 0), mixture=True)
    w.add_step(_agg(1.0, {"sine": 2, "line": 6}, {"sine": 1.0, "line": 3.0}), [_result(0, 4, 0.5), _result(1, 4, 1.5)])
    w.add_step(_agg(3.0, {"sine": 6, "line": 2}, {"sine": 2.0, "line": 5.0}, {"preadapt_loss": 7.0}), [_result(0, 4, 0.5)])
    w.add_time("optimizer", 0.004)
    w.add_time("optimizer", 0.002)
    m = w.means((5_000_000, 8_000_000))
    assert m[names.WIRE_MB] == 2.0 + 4.0  # MB per step of the window, sent and received
    assert m[names.meta_metric("loss")] == 2.0 and m[names.META_GRAD_NORM] == 5.0
    assert m[names.meta_metric("preadapt_loss")] == 7.0  # measured on one step of the two: its value
    assert m[names.family_metric("sine", "loss")] == (2 * 1.0 + 6 * 2.0) / 8  # task-weighted over the window
    assert m[names.family_metric("line", "loss")] == (6 * 3.0 + 2 * 5.0) / 8
    assert m[names.shard_compute_ms(0)] == 500 and m[names.shard_compute_ms(1)] == 750  # per step of the window
    assert m[names.shard_tasks_per_s(0)] == 8 / 1.0 and m[names.shard_tasks_per_s(1)] == 4 / 1.5
    assert abs(m[names.step_time_ms("optimizer")] - 3.0) < 1e-9
    assert m[names.THROUGHPUT_TASKS_PER_S] > 0 and w.steps == 2 and w.tasks == 16


def test_a_single_family_has_no_family_series_and_a_restarted_clock_leaves_out_what_came_before():
    """One family's series would copy ``meta/``; the steps before ``restart_clock`` (a first step
    that compiled) count in the means of what they measured, not in the timings."""
    w = Window()
    w.add_step(_agg(1.0, {"sine": 4}, {"sine": 1.0}), [_result(0, 4, 30.0)])
    w.add_time("optimizer", 9.0)
    w.restart_clock()
    assert names.THROUGHPUT_TASKS_PER_S not in w.means() and names.shard_compute_ms(0) not in w.means()
    w.add_step(_agg(3.0, {"sine": 4}, {"sine": 3.0}), [_result(0, 4, 0.002)])
    w.add_time("optimizer", 0.001)
    m = w.means()
    assert m[names.META_LOSS] == 2.0 and not any(k.startswith("family/") for k in m)
    assert abs(m[names.shard_compute_ms(0)] - 2.0) < 1e-9 and abs(m[names.step_time_ms("optimizer")] - 1.0) < 1e-9
    assert m[names.shard_tasks_per_s(0)] == 4 / 0.002


def test_a_window_keeps_each_shards_last_system_report():
    """Shards report their process on the steps that end a window; a step without a report (or a
    recomputed slot, which carries none) keeps the last one."""
    w = Window()
    with_report = [dataclasses.replace(_result(k, 4, 0.1), system={"rss_megabytes": 100.0 + k}) for k in (0, 1)]
    w.add_step(_agg(1.0, {"sine": 8}, {}), with_report)
    w.add_step(
        _agg(1.0, {"sine": 8}, {}), [_result(0, 4, 0.1), dataclasses.replace(_result(1, 4, 0.1), system={"rss_megabytes": 7.0})]
    )
    assert w.shard_system == {0: {"rss_megabytes": 100.0}, 1: {"rss_megabytes": 7.0}}
    assert not [k for k in w.means() if k.startswith(names.SYSTEM)]  # logged apart, at their own interval


def test_a_meta_rl_window_counts_environment_steps_in_place_of_tasks():
    """Every task of a meta-RL run takes the same environment steps: the rates are in those, and
    a tasks-per-second series (the same curve scaled) is not logged beside them."""
    w = Window(env_steps=3000)
    w.add_step(_agg(1.0, {"nav": 8}, {"nav": 1.0}), [_result(0, 4, 0.5), _result(1, 4, 2.0)])
    m = w.means()
    assert m[names.shard_env_steps_per_s(0)] == 4 * 3000 / 0.5 and m[names.shard_env_steps_per_s(1)] == 4 * 3000 / 2.0
    assert m[names.THROUGHPUT_ENV_STEPS_PER_S] > 0
    assert not any(k.endswith("tasks_per_s") for k in m)
