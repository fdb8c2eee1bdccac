"""A logging window: sums over the meta-steps since the last log, so each logged point is a
window mean (metrics measured on fewer steps are divided by the steps that measured them)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from distmeta.shard.aggregate import Aggregate
from distmeta.shard.result import ShardResult
from distmeta.tracking import names


@dataclass
class Window:
    steps: int = 0
    tasks: int = 0
    started: float = field(default_factory=time.perf_counter)
    metrics: dict[str, float] = field(default_factory=dict)  # divided by the steps that measured them
    metric_steps: dict[str, int] = field(default_factory=dict)
    per_family: dict[str, dict[str, float]] = field(default_factory=dict)  # sums over the family's tasks
    family_tasks: dict[str, dict[str, int]] = field(default_factory=dict)  # per metric: the tasks that measured it
    shard_tasks: dict[int, int] = field(default_factory=dict)
    shard_seconds: dict[int, float] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)  # seconds per names.STEP_PARTS, summed
    traffic_from: tuple[int, int] = (0, 0)  # the group's bytes sent and received when the window opened

    def add(self, key: str, value: float) -> None:
        self.metrics[key] = self.metrics.get(key, 0.0) + value
        self.metric_steps[key] = self.metric_steps.get(key, 0) + 1

    def add_family(self, family: str, key: str, mean: float, tasks: int) -> None:
        sums, counts = self.per_family.setdefault(family, {}), self.family_tasks.setdefault(family, {})
        sums[key] = sums.get(key, 0.0) + mean * tasks
        counts[key] = counts.get(key, 0) + tasks

    def add_time(self, part: str, seconds: float) -> None:
        self.parts[part] = self.parts.get(part, 0.0) + seconds

    def add_step(self, agg: Aggregate, results: Sequence[ShardResult]) -> None:
        """One meta-step's aggregate and its shards' timings."""
        self.steps += 1
        self.tasks += agg.task_count
        for key, value in agg.metrics.items():
            self.add(names.meta_metric(key), value)
        self.add(names.META_GRAD_NORM, agg.grad_norm)
        for f, n in agg.family_counts.items():
            for key, value in agg.family_metrics[f].items():
                self.add_family(f, key, value, n)
            self.add(names.family_metric(f, "grad_share"), agg.family_shares[f])
        for r in results:
            self.shard_seconds[r.shard] = self.shard_seconds.get(r.shard, 0.0) + r.seconds
            self.shard_tasks[r.shard] = self.shard_tasks.get(r.shard, 0) + r.task_count

    def means(self, traffic: tuple[int, int] = (0, 0)) -> dict[str, float]:
        """The window's metrics: per-step and per-task means, per-shard rates, step-time parts,
        throughput since the window started, and the MB per step through the group, whose bytes
        sent and received so far are ``traffic``."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        out = {k: v / self.metric_steps[k] for k, v in self.metrics.items()}
        for f, sums in self.per_family.items():
            out.update({names.family_metric(f, k): v / self.family_tasks[f][k] for k, v in sums.items()})
        for k, seconds in self.shard_seconds.items():
            out[names.shard_seconds(k)] = seconds / self.steps
            out[names.shard_tasks_per_s(k)] = self.shard_tasks[k] / max(seconds, 1e-9)
        out.update({names.step_time_ms(k): 1000 * v / self.steps for k, v in self.parts.items()})
        out[names.THROUGHPUT_TASKS_PER_S] = self.tasks / elapsed
        out[names.THROUGHPUT_STEPS_PER_S] = self.steps / elapsed
        out[names.WIRE_SENT_MB] = (traffic[0] - self.traffic_from[0]) / 1e6 / self.steps
        out[names.WIRE_RECEIVED_MB] = (traffic[1] - self.traffic_from[1]) / 1e6 / self.steps
        return out
