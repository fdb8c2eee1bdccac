"""How a mixture's families weigh in the meta-gradient (``tasks.family_weighting``; pure torch).

Each weighting maps the families' gradient sums (over their tasks of one meta-step) to their
contributions, which add up to the meta-gradient. Families arrive in name order, so the result
depends on neither the shard layout nor arrival order. ``count``, ``uniform`` and ``weights``
scale each sum by a number; ``normalized`` and ``pcgrad`` also look at the gradients, to keep one
family's gradient from drowning or cancelling another's in a network they all share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

Grads = Mapping[str, torch.Tensor]
Counts = Mapping[str, int]
Weights = Mapping[str, float]
Weighting = Callable[[Grads, Counts, Weights], dict[str, torch.Tensor]]


def _by_count(grads: Grads, counts: Counts, loss_weights: Weights) -> dict[str, torch.Tensor]:
    """Every task alike: the mean over all tasks."""
    total = sum(counts[f] for f in grads)
    return {f: g / total for f, g in grads.items()}


def _uniform(grads: Grads, counts: Counts, loss_weights: Weights) -> dict[str, torch.Tensor]:
    """Every family alike: the mean over families of each family's mean."""
    return {f: g / counts[f] / len(grads) for f, g in grads.items()}


def _by_weights(grads: Grads, counts: Counts, loss_weights: Weights) -> dict[str, torch.Tensor]:
    """Family ``f`` weighs ``loss_weights[f]`` (1 if unset), normalised over the families present."""
    weight = {f: float(loss_weights.get(f, 1.0)) for f in grads}
    norm = sum(weight.values())
    return {f: g * (weight[f] / (norm * counts[f])) for f, g in grads.items()}


def _normalized(grads: Grads, counts: Counts, loss_weights: Weights) -> dict[str, torch.Tensor]:
    """Every family's mean gradient rescaled to the same norm, the mean of their norms: a family
    whose losses run larger (a wider target range) no longer steers the shared network alone. A
    family whose gradient is zero contributes nothing."""
    means = _uniform(grads, counts, loss_weights)
    norms = {f: float(m.double().norm()) for f, m in means.items()}
    scale = sum(norms.values()) / len(norms)
    return {f: m * (scale / norms[f]) if norms[f] > 0 else m for f, m in means.items()}


def _pcgrad(grads: Grads, counts: Counts, loss_weights: Weights) -> dict[str, torch.Tensor]:
    """Gradient surgery (Yu et al., NeurIPS 2020, "PCGrad"), on the families' means, each weighing
    alike: where family ``f``'s gradient points against family ``h``'s (a negative inner product),
    the part of it along ``h``'s is removed, so one family's step does not undo another's. The
    paper visits the other tasks in a random order; here ``f`` visits the others in name order,
    starting after itself, so the result is a function of the gradients alone."""
    means = _uniform(grads, counts, loss_weights)
    families = list(means)
    out = {}
    for i, f in enumerate(families):
        g = means[f].double().clone()
        for h in families[i + 1 :] + families[:i]:
            other = means[h].double()
            dot, norm2 = float(g @ other), float(other @ other)
            if dot < 0 and norm2 > 0:
                g -= (dot / norm2) * other
        out[f] = g.to(means[f].dtype)
    return out


WEIGHTINGS: dict[str, Weighting] = {
    "count": _by_count,
    "uniform": _uniform,
    "weights": _by_weights,
    "normalized": _normalized,
    "pcgrad": _pcgrad,
}
"""``tasks.family_weighting``: each family's contribution to the meta-gradient, given the families'
gradient sums (in name order), their task counts and the configured loss weights."""
