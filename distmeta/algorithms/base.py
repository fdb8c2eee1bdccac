"""What every algorithm provides, and the pieces they share (losses, functional calls).

An :class:`Algorithm` is a frozen dataclass of plain settings (it travels to shard actors) with
pure ``torch.func`` methods over one task ``(support_x, support_y, query_x, query_y)``:

- ``task_objective``: the scalar whose gradient w.r.t. the meta-parameters is the task's
  meta-gradient, plus a dict of detached per-task metrics;
- ``task_grad``: that gradient directly (the default differentiates ``task_objective``;
  algorithms with a memory-saving explicit gradient override it);
- ``scores``: the evaluation score (accuracy, or MSE for regression) after given numbers of
  adaptation steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

Params = dict[str, torch.Tensor]
Metrics = dict[str, torch.Tensor]


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [N, C]`` against integer ``labels [N]`` (classification tasks)."""
    return F.cross_entropy(logits, labels)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mse": mse, "cross_entropy": cross_entropy}


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == labels).to(logits.dtype).mean()


def forward(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
    return functional_call(model, (params, buffers), (x,))


def forward_part(model: nn.Module, part: str, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
    """Run submodule ``part`` of ``model`` (e.g. ``body``) with the entries of ``params``/``buffers``
    under its prefix."""
    prefix = part + "."

    def strip(d: Params) -> Params:
        return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}

    return functional_call(getattr(model, part), (strip(params), strip(buffers)), (x,))


@dataclass(frozen=True)
class Algorithm:
    """Base of every algorithm; ``loss`` is a key of :data:`LOSSES` (``cross_entropy`` makes the
    tasks classification: accuracy is reported and is the evaluation score)."""

    name: ClassVar[str] = ""
    adapts: ClassVar[bool] = True
    """False for methods with no inner loop (ProtoNets): evaluation then has a single step count, 0."""
    loss: str = "mse"
    diagnostics: bool = True
    """Also measure the metrics that cost compute of their own (``preadapt_*``: one more forward
    pass over each task's query set). The learner turns them off on steps it does not log."""

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss '{self.loss}'; known: {', '.join(LOSSES)}")

    @property
    def classification(self) -> bool:
        return self.loss == "cross_entropy"

    @property
    def score_name(self) -> str:
        """What :meth:`scores` measures: ``acc`` (higher is better) or ``mse`` (lower is better)."""
        return "acc" if self.classification else "mse"

    def meta_model(self, model: nn.Module) -> nn.Module:
        """The module whose parameters are the meta-parameters (MetaSGD adds learned step sizes)."""
        return model

    def task_objective(self, model: nn.Module, params: Params, buffers: Params, sx, sy, qx, qy) -> tuple[torch.Tensor, Metrics]:
        raise NotImplementedError

    def task_grad(self, model: nn.Module, params: Params, buffers: Params, sx, sy, qx, qy) -> tuple[Params, Metrics]:
        return grad(lambda p: self.task_objective(model, p, buffers, sx, sy, qx, qy), has_aux=True)(params)

    @property
    def explicit_grad(self) -> bool:
        """True when :meth:`task_grad` is not simply the gradient of :meth:`task_objective`
        (then the batched path vmaps ``task_grad`` instead of differentiating a vmapped sum)."""
        return False

    def scores(self, model: nn.Module, params: Params, buffers: Params, sx, sy, qx, qy, steps: tuple[int, ...]) -> torch.Tensor:
        """``[len(steps)]``: the query score after each of ``steps`` inner steps (first order)."""
        raise NotImplementedError

    # -- shared helpers ---------------------------------------------------------------------------
    def query_metrics(self, out: torch.Tensor, y: torch.Tensor, prefix: str = "query") -> tuple[torch.Tensor, Metrics]:
        """The loss of ``out`` against ``y`` and detached metrics ``<prefix>_loss`` (and ``_acc``)."""
        loss = LOSSES[self.loss](out, y)
        metrics = {f"{prefix}_loss": loss.detach()}
        if self.classification:
            metrics[f"{prefix}_acc"] = accuracy(out, y).detach()
        return loss, metrics

    def score(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return accuracy(out, y) if self.classification else mse(out, y)
