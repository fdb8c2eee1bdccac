"""Logging windows: each logged point is the mean over the steps (or tasks) that measured it."""

from __future__ import annotations

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
    w = Window(traffic_from=(1_000_000, 0))
    w.add_step(_agg(1.0, {"sine": 2, "line": 6}, {"sine": 1.0, "line": 3.0}), [_result(0, 4, 0.5), _result(1, 4, 1.5)])
    w.add_step(_agg(3.0, {"sine": 6, "line": 2}, {"sine": 2.0, "line": 5.0}, {"preadapt_loss": 7.0}), [_result(0, 4, 0.5)])
    w.add_time("optimizer", 0.004)
    w.add_time("optimizer", 0.002)
    m = w.means((5_000_000, 8_000_000))
    assert m[names.WIRE_SENT_MB] == 2.0 and m[names.WIRE_RECEIVED_MB] == 4.0  # MB per step of the window
    assert m[names.meta_metric("loss")] == 2.0 and m[names.META_GRAD_NORM] == 5.0
    assert m[names.meta_metric("preadapt_loss")] == 7.0  # measured on one step of the two: its value
    assert m[names.family_metric("sine", "loss")] == (2 * 1.0 + 6 * 2.0) / 8  # task-weighted over the window
    assert m[names.family_metric("line", "loss")] == (6 * 3.0 + 2 * 5.0) / 8
    assert m[names.shard_seconds(0)] == 0.5 and m[names.shard_seconds(1)] == 0.75  # per step of the window
    assert m[names.shard_tasks_per_s(0)] == 8 / 1.0 and m[names.shard_tasks_per_s(1)] == 4 / 1.5
    assert abs(m[names.step_time_ms("optimizer")] - 3.0) < 1e-9
    assert m[names.THROUGHPUT_TASKS_PER_S] > 0 and w.steps == 2 and w.tasks == 16
