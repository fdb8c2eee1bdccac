"""What tests read off shard groups and results, written once."""

from __future__ import annotations

import torch


def compute(group, step, weights, version, plan, diagnostics=True):
    """One step on ``group``: submit, then collect."""
    return group.collect(group.submit(step, weights, version, plan, diagnostics))


def grad_sum(result) -> torch.Tensor:
    """The sum over all of a result's tasks, whatever their family."""
    return torch.stack(list(result.family_grads.values())).sum(0)


def metric_sums(result) -> dict[str, float]:
    """A result's metric sums over all of its tasks."""
    out: dict[str, float] = {}
    for per_family in result.family_metrics.values():
        for k, v in per_family.items():
            out[k] = out.get(k, 0.0) + v
    return out
