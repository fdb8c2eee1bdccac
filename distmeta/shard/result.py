"""The message a shard sends back to the learner each meta-step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from distmeta.shard import wire


@dataclass(frozen=True)
class ShardResult:
    """What one shard computed for one meta-step, per task family; never changed once built.

    ``shard`` is the plan slot it answers (the worker that computed it may be another actor, when a
    lost shard was recomputed elsewhere). ``family_grads[f]`` is the flat (contiguous, parameter
    order) sum over the shard's tasks of family ``f`` of each task's meta-gradient;
    ``family_metrics[f]`` are sums over those tasks too. The learner divides by task counts (and
    weighs families as configured), so results combine exactly however the meta-batch was split.
    ``weights_version`` names the weights the gradients were computed against: the learner never
    applies a result for another version.
    """

    shard: int
    step: int
    weights_version: int
    family_grads: dict[str, torch.Tensor]
    family_counts: dict[str, int]
    family_metrics: dict[str, dict[str, float]]
    seconds: float
    sample_seconds: float = 0.0
    """Of ``seconds``, the time spent sampling the tasks (the rest is the meta-gradient)."""
    norm_stats: np.ndarray | None = None
    """For networks with running-statistics norms: the sum over the shard's tasks of each task's
    batch statistics (:func:`distmeta.models.batch_statistics`); the learner averages them."""
    system: dict[str, float] | None = None
    """On the steps that end a logging window, the computing process's use of CPU, memory and GPU
    (:class:`distmeta.shard.system.ProcessProbe`), for the worker's own slot only."""

    def __reduce__(self):
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "family_grads"}
        return _rebuild, (fields, *wire.pack_grads(self.family_grads))

    @property
    def task_count(self) -> int:
        return sum(self.family_counts.values())


def _rebuild(fields: dict, families: tuple[str, ...], packed) -> ShardResult:
    return ShardResult(family_grads=wire.unpack_grads(families, packed), **fields)
