"""Adaptation scores: each task's query score (MSE, or accuracy) after given numbers of inner
steps, vmapped over tasks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import vmap

from distmeta.algorithms import Algorithm
from distmeta.tasks import TaskData, TaskFamily


def score_curve(
    algo: Algorithm, model: nn.Module, params: dict[str, torch.Tensor], tasks: TaskData, steps: Sequence[int]
) -> torch.Tensor:
    """``[T, len(steps)]``: each task's score after each of ``steps`` steps of the algorithm's own
    adaptation. Evaluation needs no meta-gradient, so each step is first order."""
    buffers = dict(model.named_buffers())
    params = {k: p.detach() for k, p in params.items()}
    steps = tuple(steps)
    # On CPU, vmapping many tasks' convolutions (each task has its own adapted weights) runs as one
    # large grouped convolution, slower than one task at a time (docs/performance.md); small dense nets (regression)
    # and GPUs do better batched. Image inputs are [T, N, C, H, W].
    first = tasks.tensors()[0]
    chunk = 1 if first.device.type == "cpu" and first.dim() == 5 else None
    rebuild = tasks.from_tensors
    training = model.training
    model.eval()  # running-statistics norms use their estimates; batch-statistics ones do not care
    try:
        with torch.enable_grad():
            return vmap(lambda *t: algo.scores(model, params, buffers, rebuild(t), steps), chunk_size=chunk)(
                *tasks.tensors()
            ).detach()
    finally:
        model.train(training)


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
