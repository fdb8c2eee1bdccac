"""Adaptation scores: each task's query score (MSE, accuracy, or an environment's return) after
given numbers of inner steps, vmapped over tasks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distmeta.algorithms import Algorithm
from distmeta.algorithms.adapted import per_task
from distmeta.tasks import TaskData, TaskFamily


def score_curve(
    algo: Algorithm, model: nn.Module, params: dict[str, torch.Tensor], tasks: TaskData, steps: Sequence[int]
) -> torch.Tensor:
    """``[T, len(steps)]``: each task's score after each of ``steps`` steps of the algorithm's own
    adaptation. Evaluation needs no meta-gradient, so each step is first order."""
    buffers = dict(model.named_buffers())
    params = {k: p.detach() for k, p in params.items()}
    if algo.collects:  # environments: every task's rollouts stepped together, not vmapped
        return algo.adaptation_scores(model, params, buffers, tasks, tuple(steps))
    steps, rebuild = tuple(steps), tasks.from_tensors
    return per_task(model, lambda *t: algo.scores(model, params, buffers, rebuild(t), steps), tasks.tensors())


def sampled_curve(
    algo: Algorithm,
    model: nn.Module,
    family: TaskFamily,
    *,
    seed: int,
    stream: int,
    num_tasks: int,
    steps: Sequence[int],
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
        parts.append(score_curve(algo, model, params, tasks.to(device), steps).cpu())
    return torch.cat(parts)
