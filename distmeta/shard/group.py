"""``ShardGroup``: what the learner asks of its shards, and the in-process group.

A group runs one meta-step's shards (``submit`` returns at once, ``collect`` waits for the
results and recomputes lost work). :class:`LocalShardGroup` computes in this process;
:class:`~distmeta.shard.ray_group.RayShardGroup` on Ray actors. A second group kind (all-reduce
among actors) builds on :mod:`distmeta.shard.actors` the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from distmeta.shard import wire
from distmeta.shard.result import ShardResult
from distmeta.shard.spec import ShardData, WorkerSpec
from distmeta.shard.worker import ShardWorker

AGGREGATIONS = ("learner", "allreduce")
"""``cluster.aggregation``: the learner combines the shards' gradients, or the shard actors
all-reduce them and update replicas (:mod:`distmeta.shard.allreduce_group`)."""


@dataclass
class FaultCounters:
    """Cumulative fault-handling counts, logged by the learner under ``fault/``."""

    recomputed_tasks: int = 0
    failed_attempts: int = 0
    actor_restarts: int = 0
    """Shard actors Ray restarted after their process died (a new pid answered)."""
    lost_actors: int = 0
    """Shard actors gone for good (``cluster.max_actor_restarts`` spent); others take their shards."""
    replica_resyncs: int = 0
    """All-reduce mode: replicas given a survivor's state (or the last held one) after a failed step."""


@dataclass(frozen=True)
class InFlight:
    """A submitted meta-step: what was asked (``version`` names the ``weights`` sent) and the
    group's own handle on it (its pending calls, or the results already computed)."""

    step: int
    version: int
    plan: tuple[tuple[int, ...], ...]
    weights: torch.Tensor
    handle: Any = None


class ShardGroup(Protocol):
    num_shards: int
    faults: FaultCounters
    traffic: wire.Traffic

    def submit(
        self, step: int, weights: torch.Tensor, version: int, plan: Sequence[Sequence[int]], diagnostics: bool = True,
        epoch: int = 0, origin: torch.Tensor | None = None,
    ) -> InFlight:  # fmt: skip
        """Start computing ``step`` at the flat ``weights`` (:func:`distmeta.shard.wire.weights_out`) and
        return at once (the pipelined learner applies step s while the shards compute step s+1).
        ``diagnostics``, ``epoch`` and ``origin``: see :meth:`ShardWorker.compute`."""
        ...

    def collect(self, call: InFlight) -> list[ShardResult]:
        """One result per non-empty entry of the call's plan, in plan order, recomputing lost work."""
        ...

    def workers_info(self) -> list[dict[str, str]]:
        """Host/pid/device of each shard's worker."""
        ...

    def close(self) -> None:
        """Release the workers (kills actors)."""
        ...


def frozen_plan(plan: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(i) for i in p) for p in plan)


class LocalShardGroup:
    """``cluster.num_shards = 0``: every shard of the plan is computed in this process, in order.
    There is nothing to overlap with: :meth:`submit` computes at once."""

    num_shards = 0

    def __init__(self, spec: WorkerSpec, data: ShardData = ()):
        self.worker = ShardWorker(0, spec, *data)
        self.faults = FaultCounters()
        self.traffic = wire.Traffic()  # nothing crosses a process boundary

    def submit(self, step, weights, version, plan, diagnostics=True, epoch=0, origin=None) -> InFlight:
        plan = frozen_plan(plan)
        results = [
            self.worker.compute(step, weights, version, list(idx), slot=k, diagnostics=diagnostics, epoch=epoch, origin=origin)
            for k, idx in enumerate(plan)
            if idx
        ]
        return InFlight(step, version, plan, weights, results)

    def collect(self, call: InFlight) -> list[ShardResult]:
        return list(call.handle)

    def workers_info(self):
        return [self.worker.info()]

    def close(self) -> None:
        pass
