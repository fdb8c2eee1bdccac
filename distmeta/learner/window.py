"""A logging window: sums over the meta-steps since the last log, so each logged point is a
window mean (metrics measured on fewer steps are divided by the steps that measured them).
Per-family series only for a mixture (one family's would copy ``meta/``)."""

from __future__ import annotations

import dataclasses
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
    timed_steps: int = 0  # the steps since the clock started (all of them, unless restart_clock)
    timed_tasks: int = 0
    started: float = field(default_factory=time.perf_counter)
    metrics: dict[str, float] = field(default_factory=dict)  # divided by the steps that measured them
    metric_steps: dict[str, int] = field(default_factory=dict)
    per_family: dict[str, dict[str, float]] = field(default_factory=dict)  # sums over the family's tasks
    family_tasks: dict[str, dict[str, int]] = field(default_factory=dict)  # per metric: the tasks that measured it
    shard_tasks: dict[int, int] = field(default_factory=dict)
    shard_seconds: dict[int, float] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)  # seconds per names.STEP_PARTS, summed
    shard_system: dict[int, dict[str, float]] = field(default_factory=dict)  # each shard's last report
    traffic_from: tuple[int, int] = (0, 0)  # the group's bytes sent and received when the window opened
    mixture: bool = False
    env_steps: int = 0  # meta-RL: environment steps per task; the rates then count those, not tasks

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
        self.timed_steps += 1
        self.timed_tasks += agg.task_count
        for key, value in agg.metrics.items():
            self.add(names.meta_metric(key), value)
        self.add(names.META_GRAD_NORM, agg.grad_norm)
        for f, n in agg.family_counts.items() if self.mixture else ():
            for key, value in agg.family_metrics[f].items():
                self.add_family(f, key, value, n)
            self.add(names.family_metric(f, "grad_share"), agg.family_shares[f])
        for r in results:
            self.shard_seconds[r.shard] = self.shard_seconds.get(r.shard, 0.0) + r.seconds
            self.shard_tasks[r.shard] = self.shard_tasks.get(r.shard, 0) + r.task_count
            if r.system is not None:
                self.shard_system[r.shard] = r.system

    def restart_clock(self) -> None:
        """Time from now: the steps so far (a first step that compiled) count in the window's
        means of what they measured, not in its timings and throughput."""
        self.started, self.timed_steps, self.timed_tasks = time.perf_counter(), 0, 0
        self.parts.clear()
        self.shard_seconds.clear()
        self.shard_tasks.clear()

    def means(self, traffic: tuple[int, int] = (0, 0)) -> dict[str, float]:
        """The window's metrics: per-step and per-task means, per-shard rates, step-time parts and
        throughput over the steps timed, and the MB per step through the group, whose bytes sent
        and received so far are ``traffic``."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        out = {k: v / self.metric_steps[k] for k, v in self.metrics.items()}
        for f, sums in self.per_family.items():
            out.update({names.family_metric(f, k): v / self.family_tasks[f][k] for k, v in sums.items()})
        if self.timed_steps:
            for k, seconds in self.shard_seconds.items():
                out[names.shard_compute_ms(k)] = 1000 * seconds / self.timed_steps
                out[self._rate_name(k)] = self.shard_tasks[k] * max(self.env_steps, 1) / max(seconds, 1e-9)
            out.update({names.step_time_ms(k): 1000 * v / self.timed_steps for k, v in self.parts.items()})
            out[self._rate_name()] = self.timed_tasks * max(self.env_steps, 1) / elapsed
        moved = traffic[0] - self.traffic_from[0] + traffic[1] - self.traffic_from[1]
        out[names.WIRE_MB] = moved / 1e6 / self.steps
        return out

    def _rate_name(self, shard: int | None = None) -> str:
        """The throughput series (``shard``'s, or the run's): in tasks, or in environment steps."""
        if shard is None:
            return names.THROUGHPUT_ENV_STEPS_PER_S if self.env_steps else names.THROUGHPUT_TASKS_PER_S
        return names.shard_env_steps_per_s(shard) if self.env_steps else names.shard_tasks_per_s(shard)


def fault_totals(faults, skipped_steps: int, replicated: bool) -> dict[str, float]:
    """Each of :data:`names.FAULTS` so far, from a shard group's ``faults`` and the learner's
    skipped steps (replica resyncs in all-reduce mode only)."""
    totals = {names.FAULT_RECOMPUTED_TASKS: faults.recomputed_tasks, names.FAULT_FAILED_ATTEMPTS: faults.failed_attempts,
              names.FAULT_ACTOR_RESTARTS: faults.actor_restarts, names.FAULT_LOST_ACTORS: faults.lost_actors,
              names.FAULT_SKIPPED_STEPS: skipped_steps}  # fmt: skip
    if replicated:
        totals[names.FAULT_REPLICA_RESYNCS] = faults.replica_resyncs
    return {k: float(v) for k, v in totals.items()}


def summed_times(rounds: Sequence[Sequence[ShardResult]]) -> list[ShardResult]:
    """A meta-step's shard results over its outer epochs (each a round of calls): the last
    round's, with each shard's seconds summed over the rounds."""
    if len(rounds) == 1:
        return list(rounds[0])
    seconds: dict[int, tuple[float, float]] = {}
    for results in rounds:
        for r in results:
            total, sampling = seconds.get(r.shard, (0.0, 0.0))
            seconds[r.shard] = (total + r.seconds, sampling + r.sample_seconds)
    return [dataclasses.replace(r, seconds=seconds[r.shard][0], sample_seconds=seconds[r.shard][1]) for r in rounds[-1]]
