"""The message a shard sends back to the learner each meta-step."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ShardResult:
    """What one shard computed for one meta-step.

    ``grad_sum`` is the flat (contiguous, parameter order) sum over the shard's tasks of each task's
    meta-gradient; the learner divides by the total task count, so results combine exactly however
    the meta-batch was split. ``metrics`` are sums over tasks too. ``weights_version`` names the
    weights the gradient was computed against: the learner never applies a result for another version.
    """

    shard: int
    step: int
    weights_version: int
    grad_sum: torch.Tensor
    task_count: int
    family_counts: dict[str, int]
    metrics: dict[str, float]
    seconds: float
    worker: dict[str, str] = field(default_factory=dict)
