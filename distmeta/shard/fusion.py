"""Which of a shard's families compute their meta-gradients together, in one vmapped call
(:func:`distmeta.algorithms.meta_grad_grouped`): a small network's step costs the calls, not the
arithmetic, so a mixture's families on one network are cheaper as one batch (docs/performance.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from distmeta.tasks import TaskData


def dense(model: nn.Module) -> bool:
    """Whether ``model`` has no convolution. Grouped, each task reads its family's row of the
    weights: per-task weights make a dense layer's product a batched one of the same cost, but
    turn a convolution at shared weights into a grouped one."""
    return not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def fusion_groups(tasks: Mapping[int, TaskData], fusable: Callable[[int], bool]) -> list[tuple[int, ...]]:
    """``tasks``: per family index, its tasks this step. The families ``fusable`` allows whose
    tasks have the same type and per-task tensor shapes go together, in family order; every other
    family goes alone."""
    alone: list[tuple[int, ...]] = []
    together: dict[tuple, list[int]] = {}
    for f, t in tasks.items():
        if fusable(f):
            together.setdefault((type(t), tuple((x.shape[1:], x.dtype) for x in t.tensors())), []).append(f)
        else:
            alone.append((f,))
    return alone + [tuple(fs) for fs in together.values()]
