"""MAML and first-order MAML as pure functions of (params, task).

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017. For a task with support set S and query set Q, MAML adapts the meta-parameters
theta with ``steps`` gradient steps on S,

    theta'_0 = theta,   theta'_{j+1} = theta'_j - alpha * grad L_S(theta'_j),

and the meta-objective is L_Q(theta'_steps). Second-order MAML differentiates through the inner
loop (Hessian-vector products); first-order MAML (FOMAML) treats the inner gradients as
constants, so d theta'/d theta = I and the meta-gradient is grad L_Q at the adapted weights.

Everything here is ``torch.func`` code: :func:`meta_grad` vmaps :func:`task_loss` over the tasks
of a shard; :func:`meta_grad_loop` is the plain per-task twin used to check it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from distmeta.algorithms.batching import MetaGradient, Params, batched_meta_grad, looped_meta_grad
from distmeta.tasks.batch import TaskBatch


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [N, C]`` against integer ``labels [N]`` (classification tasks)."""
    return F.cross_entropy(logits, labels)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mse": mse, "cross_entropy": cross_entropy}


@dataclass(frozen=True)
class InnerLoop:
    """Inner-loop settings. ``first_order`` stops gradients through the inner updates (FOMAML);
    ``loss`` names the task loss used in both loops (a key of :data:`LOSSES`)."""

    steps: int
    lr: float
    first_order: bool = False
    loss: str = "mse"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss '{self.loss}'; known: {', '.join(LOSSES)}")


def forward(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
    return functional_call(model, (params, buffers), (x,))


def adapt(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor, inner: InnerLoop) -> Params:
    """Return the weights after ``inner.steps`` SGD steps on the support set ``(x [K, in], y [K, out])``."""
    loss = LOSSES[inner.loss]
    support_loss: Callable[[Params], torch.Tensor] = lambda p: loss(forward(model, p, buffers, x), y)
    for _ in range(inner.steps):
        grads = grad(support_loss)(params)
        if inner.first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        params = {k: p - inner.lr * grads[k] for k, p in params.items()}
    return params


def task_loss(
    model: nn.Module,
    params: Params,
    buffers: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    inner: InnerLoop,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One task's meta-objective: the query loss after adaptation, and (as a metric) the query loss before."""
    loss = LOSSES[inner.loss]
    pre = loss(forward(model, params, buffers, query_x), query_y).detach()
    adapted = adapt(model, params, buffers, support_x, support_y, inner)
    return loss(forward(model, adapted, buffers, query_x), query_y), pre


def meta_grad(model: nn.Module, params: Params, buffers: Params, tasks: TaskBatch, inner: InnerLoop) -> MetaGradient:
    """Batched path: ``vmap`` over the tasks inside one ``grad`` of the summed query losses."""
    return batched_meta_grad(lambda p, *task: task_loss(model, p, buffers, *task, inner), params, tasks)


def meta_grad_loop(model: nn.Module, params: Params, buffers: Params, tasks: TaskBatch, inner: InnerLoop) -> MetaGradient:
    """Reference twin of :func:`meta_grad`: one ``grad`` per task, summed in a Python loop."""
    return looped_meta_grad(lambda p, *task: task_loss(model, p, buffers, *task, inner), params, tasks)
