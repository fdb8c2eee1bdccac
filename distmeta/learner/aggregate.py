"""Combine shard results into one meta-gradient (pure; no Lightning, no Ray)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from distmeta.errors import NonFiniteGradientError
from distmeta.shard.result import ShardResult


@dataclass
class Aggregate:
    """The task-weighted mean meta-gradient and mean metrics of one meta-step."""

    grad: torch.Tensor
    task_count: int
    family_counts: dict[str, int]
    metrics: dict[str, float]


class StaleResultError(RuntimeError):
    """A shard answered for weights other than the ones of this step."""


def aggregate(results: Sequence[ShardResult], step: int, version: int) -> Aggregate:
    """Sum gradients in shard order and divide by the total task count.

    Every task weighs the same whichever shard computed it, so the mean equals the in-process
    mean up to float summation order. Raises :class:`StaleResultError` for a result computed
    against another weights version and :class:`NonFiniteGradientError` for NaN/inf, naming the
    step, shard and family.
    """
    if not results:
        raise ValueError("no shard results to aggregate")
    total = None
    count = 0
    families: dict[str, int] = {}
    sums: dict[str, float] = {}
    for r in sorted(results, key=lambda r: r.shard):
        if r.weights_version != version or r.step != step:
            raise StaleResultError(
                f"shard {r.shard} answered for step {r.step} / weights version {r.weights_version}, "
                f"expected step {step} / version {version}"
            )
        if not torch.isfinite(r.grad_sum).all():
            raise NonFiniteGradientError(
                f"non-finite meta-gradient at step {step} from shard {r.shard} "
                f"(families {', '.join(r.family_counts)}); the last good checkpoint is kept"
            )
        total = r.grad_sum.clone() if total is None else total.add_(r.grad_sum)
        count += r.task_count
        for f, n in r.family_counts.items():
            families[f] = families.get(f, 0) + n
        for k, v in r.metrics.items():
            sums[k] = sums.get(k, 0.0) + v
    assert total is not None
    metrics = {k: v / count for k, v in sums.items()}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise NonFiniteGradientError(f"non-finite loss at step {step}: {metrics}")
    return Aggregate(total.div_(count), count, families, metrics)
