"""Which of a shard's families compute their meta-gradients together, in one vmapped call
(:func:`distmeta.algorithms.meta_grad_grouped`): a small network's step costs the calls, not the
arithmetic, so a mixture's families on one network are cheaper as one batch, up to a size where
every task's own copy of the weights costs more than the calls saved (docs/performance.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from distmeta.tasks import TaskData


def dense(model: nn.Module) -> bool:
    """Whether ``model`` has no convolution. Grouped, each task reads its family's row of the
    weights: per-task weights make a dense layer's product a batched one of the same cost, but
    turn a convolution at shared weights into a grouped one."""
    return not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


WEIGHT_COPIES = 16 * 2**20
"""The most tasks x parameters one fused call holds: each task reads its family's row of the
weights, a copy of the network per task in the backward pass, and past this the copies cost more
than the calls saved (the measured crossover: docs/performance.md)."""


def fusion_groups(tasks: Mapping[int, TaskData], fusable: Callable[[int], bool], parameters: int = 0) -> list[tuple[int, ...]]:
    """``tasks``: per family index, its tasks this step. The families ``fusable`` allows whose
    tasks have the same type and per-task tensor shapes go together, in family order, in calls of
    at most :data:`WEIGHT_COPIES` tasks x ``parameters`` (the network's); every other family goes
    alone."""
    alone: list[tuple[int, ...]] = []
    together: dict[tuple, list[list[int]]] = {}
    room = WEIGHT_COPIES // max(parameters, 1)
    for f, t in tasks.items():
        if not fusable(f):
            alone.append((f,))
            continue
        calls = together.setdefault((type(t), tuple((x.shape[1:], x.dtype) for x in t.tensors())), [[]])
        if calls[-1] and sum(len(tasks[g]) for g in calls[-1]) + len(t) > room:
            calls.append([])
        calls[-1].append(f)
    return alone + [tuple(fs) for calls in together.values() for fs in calls]
