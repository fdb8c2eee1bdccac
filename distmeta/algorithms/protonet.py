"""Prototypical Networks as pure functions of (params, task).

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017. There is no
inner loop: the embedding network f maps the support set to features, each class's prototype is
the mean of its support features, c_n = mean_{i: y_i = n} f(x_i), and a query x is classified by
the softmax over negative squared Euclidean distances, logits_n = -||f(x) - c_n||^2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distmeta.algorithms.batching import MetaGradient, Params, batched_meta_grad, looped_meta_grad
from distmeta.algorithms.maml import forward
from distmeta.tasks.batch import TaskBatch


def prototypes(features: torch.Tensor, labels: torch.Tensor, ways: int) -> torch.Tensor:
    """Class means: ``features [N, D]``, integer ``labels [N]`` in 0..ways-1 -> ``[ways, D]``.
    Written with a one-hot matrix so it vmaps (no data-dependent shapes)."""
    onehot = F.one_hot(labels, ways).to(features.dtype)  # [N, ways]
    return (onehot.T @ features) / onehot.sum(0).unsqueeze(1)


def logits(query_features: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """``-||q - c||^2`` for ``query_features [Q, D]`` and ``protos [ways, D]`` -> ``[Q, ways]``."""
    sq = (query_features**2).sum(1, keepdim=True) - 2 * query_features @ protos.T + (protos**2).sum(1)
    return -sq


def task_loss(model: nn.Module, params: Params, buffers: Params, support_x, support_y, query_x, query_y, ways: int):
    """Cross-entropy of the query set against the support prototypes, and the query accuracy."""
    protos = prototypes(forward(model, params, buffers, support_x), support_y, ways)
    out = logits(forward(model, params, buffers, query_x), protos)
    accuracy = (out.argmax(1) == query_y).to(out.dtype).mean().detach()
    return F.cross_entropy(out, query_y), accuracy


def meta_grad(model: nn.Module, params: Params, buffers: Params, tasks: TaskBatch, ways: int) -> MetaGradient:
    """Summed gradient over the tasks, vmapped; ``preadapt`` carries the query accuracy (no adaptation)."""
    return batched_meta_grad(lambda p, *task: task_loss(model, p, buffers, *task, ways), params, tasks)


def meta_grad_loop(model: nn.Module, params: Params, buffers: Params, tasks: TaskBatch, ways: int) -> MetaGradient:
    """Per-task twin of :func:`meta_grad`, for tests."""
    return looped_meta_grad(lambda p, *task: task_loss(model, p, buffers, *task, ways), params, tasks)
