"""The two ways every algorithm's per-task loss becomes a shard's summed meta-gradient: ``vmap``
over the tasks inside one ``grad`` (the batched path), and one ``grad`` per task in a Python loop
(the slow twin the tests check it against)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import grad, vmap

from distmeta.tasks.batch import TaskBatch

Params = dict[str, torch.Tensor]
PerTaskLoss = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""``(params, support_x, support_y, query_x, query_y) -> (loss, metric)``: one task's objective
and one scalar metric of it (MAML: the query loss before adaptation; ProtoNets: query accuracy)."""


@dataclass
class MetaGradient:
    """The sum over a shard's tasks of each task's meta-gradient, plus per-task values.

    ``grads`` maps parameter names to summed gradients; ``losses`` and ``preadapt`` (the per-task
    metric) are [T].
    """

    grads: Params
    losses: torch.Tensor
    preadapt: torch.Tensor


def batched_meta_grad(per_task: PerTaskLoss, params: Params, tasks: TaskBatch) -> MetaGradient:
    def total(p: Params):
        losses, metric = vmap(lambda *task: per_task(p, *task))(*tasks.tensors())
        return losses.sum(), (losses.detach(), metric)

    grads, (losses, metric) = grad(total, has_aux=True)(params)
    return MetaGradient(grads, losses, metric)


def looped_meta_grad(per_task: PerTaskLoss, params: Params, tasks: TaskBatch) -> MetaGradient:
    def one(p: Params, *task):
        loss, metric = per_task(p, *task)
        return loss, (loss.detach(), metric)

    grads = {k: torch.zeros_like(p) for k, p in params.items()}
    losses, metrics = [], []
    for i in range(len(tasks)):
        g, (loss, metric) = grad(one, has_aux=True)(params, *(t[i] for t in tasks.tensors()))
        for k in grads:
            grads[k] += g[k]
        losses.append(loss)
        metrics.append(metric)
    return MetaGradient(grads, torch.stack(losses), torch.stack(metrics))
