"""Adaptation curves: each task's query score (MSE, or accuracy) after 0..n inner steps, vmapped over tasks."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import vmap

from distmeta.algorithms import Algorithm
from distmeta.tasks import Family, TaskBatch


def score_curve(algo: Algorithm, model: nn.Module, params: dict[str, torch.Tensor], tasks: TaskBatch, max_steps: int) -> torch.Tensor:
    """``[T, max_steps + 1]`` scores of each task after 0, 1, ..., ``max_steps`` steps of the
    algorithm's own adaptation (``[T, 1]`` for methods without an inner loop). Evaluation needs no
    meta-gradient, so each step is first order."""
    buffers = dict(model.named_buffers())
    params = {k: p.detach() for k, p in params.items()}
    with torch.enable_grad():
        return vmap(lambda *task: algo.scores(model, params, buffers, *task, max_steps))(*tasks.tensors()).detach()


def sampled_curve(
    algo: Algorithm,
    model: nn.Module,
    family: Family,
    *,
    seed: int,
    stream: int,
    num_tasks: int,
    max_steps: int,
    shots: int | None = None,
    query: int | None = None,
    chunk: int = 100,
) -> torch.Tensor:
    """:func:`score_curve` over tasks ``0..num_tasks-1`` of ``(seed, stream, step 0)``, sampled and
    scored ``chunk`` tasks at a time so memory stays bounded (image episodes are large)."""
    params = dict(model.named_parameters())
    device = next(iter(params.values())).device
    parts = []
    for start in range(0, num_tasks, chunk):
        tasks = family.sample(seed, stream, 0, range(start, min(start + chunk, num_tasks)), shots=shots, query=query)
        parts.append(score_curve(algo, model, params, tasks.to(device), max_steps).cpu())
    return torch.cat(parts)
