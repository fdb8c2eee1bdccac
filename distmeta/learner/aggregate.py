"""Combine shard results into one meta-gradient (pure; no Lightning, no Ray)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from distmeta.errors import NonFiniteGradientError
from distmeta.shard.result import ShardResult


@dataclass
class Aggregate:
    """One meta-step's meta-gradient and mean metrics, overall and per family.

    ``family_shares[f]``: the fraction of the meta-gradient that is family ``f``'s contribution,
    measured along it (``<c_f, g> / ||g||^2``; the shares add up to 1, a negative one pulls against
    the others)."""

    grad: torch.Tensor
    task_count: int
    family_counts: dict[str, int]
    metrics: dict[str, float]
    family_metrics: dict[str, dict[str, float]]
    family_shares: dict[str, float]
    norm_stats: torch.Tensor | None = None
    """The mean over the meta-batch's tasks of their batch statistics (running-statistics norms)."""


class StaleResultError(RuntimeError):
    """A shard answered for weights other than the ones of this step."""


def aggregate(
    results: Sequence[ShardResult],
    step: int,
    version: int,
    weighting: str = "count",
    loss_weights: Mapping[str, float] | None = None,
) -> Aggregate:
    """Sum each family's gradients in shard order, then combine the families.

    ``count``: every task weighs the same whichever shard or family it came from (the mean over
    tasks); ``uniform``: every family present in the meta-batch weighs the same (the mean over
    families of each family's mean); ``weights``: families weigh ``loss_weights[f]`` (normalised
    over the families present). Whatever the split of the meta-batch, the result equals the
    in-process one up to float summation order. Raises :class:`StaleResultError` for a result
    computed against another weights version and :class:`NonFiniteGradientError` for NaN/inf,
    naming the step, shard and family.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {tuple(WEIGHTINGS)}, got {weighting!r}")
    if not results:
        raise ValueError("no shard results to aggregate")
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    metric_sums: dict[str, dict[str, float]] = {}
    for r in sorted(results, key=lambda r: r.shard):
        if r.weights_version != version or r.step != step:
            raise StaleResultError(
                f"shard {r.shard} answered for step {r.step} / weights version {r.weights_version}, "
                f"expected step {step} / version {version}"
            )
        for f, g in r.family_grads.items():
            if not torch.isfinite(g).all():
                raise NonFiniteGradientError(f"non-finite meta-gradient at step {step} from shard {r.shard} (family {f})")
            sums[f] = g.clone() if f not in sums else sums[f].add_(g)
            counts[f] = counts.get(f, 0) + r.family_counts[f]
            into = metric_sums.setdefault(f, {})
            for k, v in r.family_metrics[f].items():
                into[k] = into.get(k, 0.0) + v
    families = sorted(sums)  # a fixed order: the sum does not depend on arrival or shard layout
    total = sum(counts.values())
    coef = WEIGHTINGS[weighting](families, counts, loss_weights or {})
    contributions = {f: sums[f] * coef[f] for f in families}
    grad = torch.zeros_like(sums[families[0]])
    for f in families:
        grad += contributions[f]
    overall: dict[str, float] = {}
    for f in families:
        for k, v in metric_sums[f].items():
            overall[k] = overall.get(k, 0.0) + v
    metrics = {k: v / total for k, v in overall.items()}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise NonFiniteGradientError(f"non-finite loss at step {step}: {metrics}")
    shares = _shares(families, contributions, grad)
    family_metrics = {f: {k: v / counts[f] for k, v in metric_sums[f].items()} for f in families}
    stats = [r.norm_stats for r in sorted(results, key=lambda r: r.shard) if r.norm_stats is not None]
    norm = torch.from_numpy(sum(stats[1:], stats[0].copy()) / total) if stats else None
    return Aggregate(grad, total, {f: counts[f] for f in families}, metrics, family_metrics, shares, norm)


def _shares(families: list[str], contributions: dict[str, torch.Tensor], grad: torch.Tensor) -> dict[str, float]:
    """Each family's contribution projected on the total (``<c_f, g> / ||g||^2``)."""
    if len(families) == 1:  # the whole gradient (its norm may be 0: then nothing pulls at all)
        return {families[0]: 1.0 if bool(grad.any()) else 0.0}
    norm2 = float(grad.double().pow(2).sum())
    return {f: float((contributions[f].double() * grad.double()).sum()) / norm2 if norm2 > 0 else 0.0 for f in families}


def _by_count(families: list[str], counts: dict[str, int], loss_weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {f: 1.0 / total for f in families}


def _uniform(families: list[str], counts: dict[str, int], loss_weights: Mapping[str, float]) -> dict[str, float]:
    return {f: 1.0 / (len(families) * counts[f]) for f in families}


def _by_weights(families: list[str], counts: dict[str, int], loss_weights: Mapping[str, float]) -> dict[str, float]:
    weight = {f: float(loss_weights.get(f, 1.0)) for f in families}
    norm = sum(weight.values())
    return {f: weight[f] / (norm * counts[f]) for f in families}


WEIGHTINGS: dict[str, Callable[[list[str], dict[str, int], Mapping[str, float]], dict[str, float]]] = {
    "count": _by_count,
    "uniform": _uniform,
    "weights": _by_weights,
}
"""``tasks.family_weighting``: what each family's gradient sum is multiplied by, given the
families present, their task counts and the configured loss weights."""
