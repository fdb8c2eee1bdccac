"""The two ways an algorithm's per-task gradients become a shard's summed meta-gradient: batched
with ``vmap`` (in chunks, to bound memory) and one task at a time in a Python loop (the slow twin
the tests check the batched path against, and the faster path for convolutions on CPU).

Both take the family's task data (:class:`~distmeta.tasks.protocol.TaskData`): ``vmap`` maps
over its tensors and hands the algorithm one task rebuilt from their slices."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.func import grad, vmap

from distmeta.algorithms.base import Algorithm, Mode, Params
from distmeta.tasks.protocol import TaskData

PATHS = ("vmap", "loop")
"""How a shard computes its tasks' meta-gradients (``algorithm.batching``; ``auto`` picks one)."""


@dataclass
class MetaGradient:
    """``grads``: parameter name -> gradient summed over the tasks; ``metrics``: name -> [T]
    per-task values (``loss``, ``query_loss``, ``preadapt_loss``, ``query_acc``, ...)."""

    grads: Params
    metrics: dict[str, torch.Tensor]


def meta_grad(
    algo: Algorithm, model: nn.Module, params: Params, buffers: Params, tasks: TaskData, chunk_size: int = 0, mode: Mode = Mode()
) -> MetaGradient:
    """Batched path. ``chunk_size`` > 0 computes that many tasks at a time and adds their
    gradients: peak memory is one chunk's activations instead of all tasks' (same result up to
    float summation order)."""
    batched = _in_transforms(mode)
    grads, metrics = _over_chunks(
        tasks, chunk_size, lambda chunk, start, stop: _chunk_grad(algo, model, params, buffers, chunk, batched)
    )
    return MetaGradient(grads, metrics)


def _in_transforms(mode: Mode) -> Mode:
    """``mode`` as it runs inside torch.func transforms (no plain autograd there)."""
    return mode if not mode.autograd else Mode(diagnostics=mode.diagnostics)


def _over_chunks(tasks: TaskData, chunk_size: int, compute) -> tuple[Params, dict[str, torch.Tensor]]:
    """``compute(chunk, start, stop)`` -> ``(gradients, per-task metrics)`` over chunks of at most
    ``chunk_size`` tasks (0: all at once); the gradients summed, the metrics concatenated."""
    n = len(tasks)
    size = chunk_size if 0 < chunk_size < n else n
    grads: Params | None = None
    parts: list[dict[str, torch.Tensor]] = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        g, metrics = compute(tasks.slice(start, stop) if size < n else tasks, start, stop)
        grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
        parts.append(metrics)
    assert grads is not None
    return grads, {k: torch.cat([m[k] for m in parts]) for k in parts[0]}


def _chunk_grad(algo: Algorithm, model: nn.Module, params: Params, buffers: Params, chunk: TaskData, mode: Mode):
    rebuild = chunk.from_tensors
    if algo.explicit_grad:
        g, metrics = vmap(lambda *task: algo.task_grad(model, params, buffers, rebuild(task), mode))(*chunk.tensors())
        return {k: v.sum(0) for k, v in g.items()}, metrics

    # one grad of the vmapped sum: the shared weights' backward reduces over tasks in one kernel
    def total(p: Params):
        objective, metrics = vmap(lambda *task: algo.task_objective(model, p, buffers, rebuild(task), mode))(*chunk.tensors())
        return objective.sum(), metrics

    return grad(total, has_aux=True)(params)


def meta_grad_grouped(
    algo: Algorithm, model: nn.Module, params: Params, buffers: Params, tasks: TaskData, groups: torch.Tensor, count: int,
    chunk_size: int = 0, mode: Mode = Mode(),
) -> tuple[list[Params], dict[str, torch.Tensor]]:  # fmt: skip
    """Batched path for the tasks of ``count`` groups (a mixture's families on one network) in one
    vmap: per group, the gradient summed over its tasks (``groups[t]``: task ``t``'s group), and
    the per-task metrics. Each task reads the weights as row ``groups[t]`` of the weights stacked
    per group, so one backward gives every group's sum. Equals :func:`meta_grad` on each group's
    tasks up to float summation order, in one call instead of ``count``: a small network's
    step costs the calls, not the arithmetic (docs/performance.md)."""
    batched = _in_transforms(mode)
    sums, metrics = _over_chunks(
        tasks, chunk_size,
        lambda chunk, start, stop: _grouped_chunk_grad(algo, model, params, buffers, chunk, groups[start:stop], count, batched),
    )  # fmt: skip
    return [{k: v[i] for k, v in sums.items()} for i in range(count)], metrics


def _grouped_chunk_grad(algo, model, params, buffers, chunk: TaskData, groups: torch.Tensor, count: int, mode: Mode):
    rebuild = chunk.from_tensors
    if algo.explicit_grad:  # per-task gradients already: add them up by group
        g, metrics = vmap(lambda *task: algo.task_grad(model, params, buffers, rebuild(task), mode))(*chunk.tensors())
        return {k: v.new_zeros((count, *v.shape[1:])).index_add_(0, groups, v) for k, v in g.items()}, metrics

    def total(stacked: Params):
        def one(group, *task):
            return algo.task_objective(model, {k: w[group] for k, w in stacked.items()}, buffers, rebuild(task), mode)

        objective, metrics = vmap(one)(groups, *chunk.tensors())
        return objective.sum(), metrics

    return grad(total, has_aux=True)({k: p.expand(count, *p.shape) for k, p in params.items()})


def meta_grad_loop(
    algo: Algorithm, model: nn.Module, params: Params, buffers: Params, tasks: TaskData, mode: Mode = Mode()
) -> MetaGradient:
    """Twin of :func:`meta_grad`, one task at a time, summed in a loop: each task's objective is
    differentiated by plain autograd (the inner loop too, ``Mode.autograd``), an independent
    computation of the same meta-gradient; an algorithm with its own explicit gradient
    (checkpointed inner loops) runs its ``task_grad``."""
    grads = {k: torch.zeros_like(p) for k, p in params.items()}
    rows: list[dict[str, torch.Tensor]] = []
    for i in range(len(tasks)):
        task = tasks.unbatched(i)
        if algo.explicit_grad:
            g, metrics = algo.task_grad(model, params, buffers, task, replace(mode, autograd=False))
        else:
            g, metrics = _autograd_task_grad(algo, model, params, buffers, task, replace(mode, autograd=True))
        for k in grads:
            grads[k] += g[k]
        rows.append(metrics)
    return MetaGradient(grads, {k: torch.stack([m[k] for m in rows]) for k in rows[0]})


def _autograd_task_grad(algo: Algorithm, model: nn.Module, params: Params, buffers: Params, task: TaskData, mode: Mode):
    leaves = {k: p.detach().requires_grad_() for k, p in params.items()}
    with torch.enable_grad():
        objective, metrics = algo.task_objective(model, leaves, buffers, task, mode)
        got = torch.autograd.grad(objective, list(leaves.values()), allow_unused=True)
    grads = {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(leaves.items(), got)}
    return grads, {k: v.detach() for k, v in metrics.items()}
