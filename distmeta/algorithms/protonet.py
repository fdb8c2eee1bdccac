"""Prototypical Networks as pure functions of (params, task).

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017. There is no
inner loop: the embedding network f maps the support set to features, each class's prototype is
the mean of its support features, c_n = mean_{i: y_i = n} f(x_i), and a query x is classified by
the softmax over negative squared Euclidean distances, logits_n = -||f(x) - c_n||^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distmeta.algorithms.base import Algorithm, Metrics, Mode, Options, as_objective, forward


def prototypes(features: torch.Tensor, labels: torch.Tensor, ways: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means: ``features [N, D]``, integer ``labels [N]`` in 0..ways-1 -> ``[ways, D]``, and
    which classes the support set has (``[ways]`` bool: a mixture's families may have fewer than
    ``ways``). Written with a one-hot matrix so it vmaps (no data-dependent shapes)."""
    onehot = F.one_hot(labels, ways).to(features.dtype)  # [N, ways]
    counts = onehot.sum(0)
    return (onehot.T @ features) / counts.clamp(min=1).unsqueeze(1), counts > 0


def logits(query_features: torch.Tensor, protos: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """``-||q - c||^2`` for ``query_features [Q, D]`` and ``protos [ways, D]`` -> ``[Q, ways]``;
    classes not ``present`` get -inf (probability 0, never the prediction)."""
    sq = (query_features**2).sum(1, keepdim=True) - 2 * query_features @ protos.T + (protos**2).sum(1)
    return -sq if present is None else torch.where(present, -sq, float("-inf"))


@dataclass(frozen=True)
class ProtoNet(Algorithm):
    """``ways``: the most classes an episode may have (labels are 0..ways-1); an episode with
    fewer (a mixture family with a smaller N) scores only its own classes."""

    name = "protonet"
    adapts = False
    uses_head = False
    classification_only = True
    loss: str = "cross_entropy"
    ways: int = 5

    def __post_init__(self):
        super().__post_init__()
        if not self.classification:
            raise ValueError("ProtoNets classify: they need a classification task family (loss cross_entropy)")

    @classmethod
    def from_options(cls, options: Options) -> ProtoNet:
        return cls(loss=options.loss, ways=options.ways)

    def task_logits(self, model, params, buffers, sx, sy, qx) -> torch.Tensor:
        protos, present = prototypes(forward(model, params, buffers, sx), sy, self.ways)
        return logits(forward(model, params, buffers, qx), protos, present)

    def task_objective(self, model, params, buffers, task, mode: Mode = Mode()) -> tuple[torch.Tensor, Metrics]:
        logits_ = self.task_logits(model, params, buffers, task.support_x, task.support_y, task.query_x)
        loss, metrics = self.query_metrics(logits_, task.query_y)
        return loss, as_objective(metrics)

    def query_outputs(self, model, params, buffers, support_x, support_y, query_x, steps: int = 0) -> torch.Tensor:
        """The query logits against the support set's prototypes (no inner loop: ``steps`` does nothing)."""
        return self.task_logits(model, {k: v.detach() for k, v in params.items()}, buffers, support_x, support_y, query_x)

    def scores(self, model, params, buffers, task, steps: tuple[int, ...] = (0,)) -> torch.Tensor:
        """No inner loop: the same score whatever the step count."""
        params = {k: v.detach() for k, v in params.items()}
        logits_ = self.task_logits(model, params, buffers, task.support_x, task.support_y, task.query_x)
        return self.score(logits_, task.query_y).expand(len(steps))
