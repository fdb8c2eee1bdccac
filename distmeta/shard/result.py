"""The message a shard sends back to the learner each meta-step."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ShardResult:
    """What one shard computed for one meta-step, per task family.

    ``family_grads[f]`` is the flat (contiguous, parameter order) sum over the shard's tasks of
    family ``f`` of each task's meta-gradient; ``family_metrics[f]`` are sums over those tasks too.
    The learner divides by task counts (and weighs families as configured), so results combine
    exactly however the meta-batch was split. ``weights_version`` names the weights the gradients
    were computed against: the learner never applies a result for another version.
    """

    shard: int
    step: int
    weights_version: int
    family_grads: dict[str, torch.Tensor]
    family_counts: dict[str, int]
    family_metrics: dict[str, dict[str, float]]
    seconds: float
    worker: dict[str, str] = field(default_factory=dict)
    sample_seconds: float = 0.0
    """Of ``seconds``, the time spent sampling the tasks (the rest is the meta-gradient)."""

    @property
    def task_count(self) -> int:
        return sum(self.family_counts.values())

    @property
    def grad_sum(self) -> torch.Tensor:
        """The sum over all of the shard's tasks, whatever their family."""
        grads = list(self.family_grads.values())
        total = grads[0].clone()
        for g in grads[1:]:
            total += g
        return total

    @property
    def metrics(self) -> dict[str, float]:
        """Metric sums over all of the shard's tasks."""
        out: dict[str, float] = {}
        for per_family in self.family_metrics.values():
            for k, v in per_family.items():
                out[k] = out.get(k, 0.0) + v
        return out
