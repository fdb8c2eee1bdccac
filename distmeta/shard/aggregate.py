"""Combine per-family meta-gradient sums into one meta-gradient (pure; no Lightning, no Ray).

Both aggregation modes use the same maths: the learner over its shards' results
(:func:`aggregate`), and in all-reduce mode every replica over the group's reduced sums
(:func:`combine`), so the two modes weigh, check and step alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from distmeta.errors import NonFiniteGradientError
from distmeta.shard.result import ShardResult
from distmeta.shard.weighting import WEIGHTINGS


@dataclass
class Aggregate:
    """One meta-step's meta-gradient and mean metrics, overall and per family.

    ``family_shares[f]``: the fraction of the meta-gradient that is family ``f``'s contribution,
    measured along it (``<c_f, g> / ||g||^2``; the shares add up to 1, a negative one pulls against
    the others). ``grad`` is None where the learner never sees it (all-reduce mode)."""

    grad: torch.Tensor | None
    task_count: int
    family_counts: dict[str, int]
    metrics: dict[str, float]
    family_metrics: dict[str, dict[str, float]]
    family_shares: dict[str, float]
    grad_norm: float
    norm_stats: torch.Tensor | None = None
    """The mean over the meta-batch's tasks of their batch statistics (running-statistics norms)."""


@dataclass(frozen=True)
class Combined:
    """What combining the family sums measures besides the gradient: each family's share of it
    and its norm (all-reduce replicas report these; the learner never sees their gradient)."""

    shares: dict[str, float]
    grad_norm: float


@dataclass
class Sums:
    """Per family: the gradient sum, the task count and the metric sums over a meta-step's tasks;
    and the sum of the tasks' batch statistics (running norms)."""

    grads: dict[str, torch.Tensor]
    counts: dict[str, int]
    metrics: dict[str, dict[str, float]]
    norm_stats: np.ndarray | None


class StaleResultError(RuntimeError):
    """A shard answered for weights other than the ones of this step."""


def family_sums(results: Sequence[ShardResult], step: int, version: int) -> Sums:
    """Each family's sums over ``results``, in shard order. Raises :class:`StaleResultError` for a
    result computed against another weights version and :class:`NonFiniteGradientError` for
    NaN/inf, naming the step, shard and family."""
    if not results:
        raise ValueError("no shard results to aggregate")
    grads: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    metrics: dict[str, dict[str, float]] = {}
    stats: np.ndarray | None = None
    for r in sorted(results, key=lambda r: r.shard):
        if r.weights_version != version or r.step != step:
            raise StaleResultError(
                f"shard {r.shard} answered for step {r.step} / weights version {r.weights_version}, "
                f"expected step {step} / version {version}"
            )
        for f, g in r.family_grads.items():
            if not torch.isfinite(g).all():
                raise NonFiniteGradientError(f"non-finite meta-gradient at step {step} from shard {r.shard} (family {f})")
            grads[f] = g.clone() if f not in grads else grads[f].add_(g)
        for f, n in r.family_counts.items():
            counts[f] = counts.get(f, 0) + n
            into = metrics.setdefault(f, {})
            for k, v in r.family_metrics[f].items():
                into[k] = into.get(k, 0.0) + v
        if r.norm_stats is not None:
            stats = r.norm_stats.copy() if stats is None else stats + r.norm_stats
    return Sums(grads, counts, metrics, stats)


def combine(
    grads: Mapping[str, torch.Tensor], counts: Mapping[str, int], step: int, weighting: str = "count",
    loss_weights: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, Combined]:  # fmt: skip
    """The meta-gradient from per-family gradient sums, families in name order (the result does
    not depend on arrival or shard layout), and each family's share of it.

    ``weighting`` names one of :data:`~distmeta.shard.weighting.WEIGHTINGS` (``count``: the mean
    over tasks, whichever shard or family they came from; ``uniform``, ``weights``, ``normalized``,
    ``pcgrad``: see there). Raises :class:`NonFiniteGradientError` for a NaN/inf sum."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {tuple(WEIGHTINGS)}, got {weighting!r}")
    families = sorted(grads)
    for f in families:
        if not torch.isfinite(grads[f]).all():
            raise NonFiniteGradientError(f"non-finite meta-gradient at step {step} (family {f})")
    contributions = WEIGHTINGS[weighting]({f: grads[f] for f in families}, counts, loss_weights or {})
    grad = torch.zeros_like(grads[families[0]])
    for f in families:
        grad += contributions[f]
    return grad, Combined(_shares(families, contributions, grad), grad.norm().item())


def aggregate(
    results: Sequence[ShardResult],
    step: int,
    version: int,
    weighting: str = "count",
    loss_weights: Mapping[str, float] | None = None,
    combined: Combined | None = None,
) -> Aggregate:
    """The step's :class:`Aggregate` from its shard results. Results without gradients (all-reduce
    mode: the replicas combined them) give the metrics only, with what the replicas measured
    (``combined``). Whatever the split of the meta-batch, the result equals the in-process one up
    to float summation order."""
    sums = family_sums(results, step, version)
    grad = None
    if sums.grads:
        grad, combined = combine(sums.grads, sums.counts, step, weighting, loss_weights)
    if combined is None:
        raise ValueError("results without gradients need what the replicas combined")
    families = sorted(sums.counts)
    total = sum(sums.counts.values())
    overall: dict[str, float] = {}
    for f in families:
        for k, v in sums.metrics[f].items():
            overall[k] = overall.get(k, 0.0) + v
    metrics = {k: v / total for k, v in overall.items()}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise NonFiniteGradientError(f"non-finite loss at step {step}: {metrics}")
    family_metrics = {f: {k: v / sums.counts[f] for k, v in sums.metrics[f].items()} for f in families}
    norm = torch.from_numpy(sums.norm_stats / total) if sums.norm_stats is not None else None
    counts = {f: sums.counts[f] for f in families}
    return Aggregate(grad, total, counts, metrics, family_metrics, dict(combined.shares), combined.grad_norm, norm)


def _shares(families: list[str], contributions: dict[str, torch.Tensor], grad: torch.Tensor) -> dict[str, float]:
    """Each family's contribution projected on the total (``<c_f, g> / ||g||^2``)."""
    if len(families) == 1:  # the whole gradient (its norm may be 0: then nothing pulls at all)
        return {families[0]: 1.0 if bool(grad.any()) else 0.0}
    norm2 = float(grad.double().pow(2).sum())
    return {f: float((contributions[f].double() * grad.double()).sum()) / norm2 if norm2 > 0 else 0.0 for f in families}
