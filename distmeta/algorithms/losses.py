"""Losses and the scores task families are evaluated by, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [N, C]`` against integer ``labels [N]`` (classification tasks)."""
    return F.cross_entropy(logits, labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == labels).to(logits.dtype).mean()


@dataclass(frozen=True)
class Loss:
    """A training loss with the score a task family is evaluated by."""

    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    score_name: str
    """The score's name in metrics (``meta/val_<score_name>``, ``test/<score_name>.k...``)."""
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    higher_is_better: bool
    classification: bool
    """Integer class labels: the accuracy is reported with the loss."""


def _no_targets(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    raise TypeError("an environment family's tasks have no targets: its algorithms optimise returns")


LOSSES: dict[str, Loss] = {
    "mse": Loss(mse, "mse", mse, higher_is_better=False, classification=False),
    "cross_entropy": Loss(cross_entropy, "acc", accuracy, higher_is_better=True, classification=True),
    "return": Loss(_no_targets, "return", _no_targets, higher_is_better=True, classification=False),
}
"""The losses by name; a task family names the one its tasks train with (``return``: meta-RL
families, trained by policy gradients and scored by the average undiscounted return)."""
