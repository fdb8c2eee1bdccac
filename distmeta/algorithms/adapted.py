"""Adapted predictions: each task's query outputs after the algorithm's own inner loop on its
support set, vmapped over tasks (what a served model returns; the evaluation scores the same way)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import vmap

from distmeta.algorithms.base import Algorithm


def serves(kind: type[Algorithm]) -> bool:
    """Whether algorithms of ``kind`` say how to adapt for a served model (:meth:`Algorithm.query_outputs`)."""
    return kind.query_outputs is not Algorithm.query_outputs


def adapted_outputs(algo: Algorithm, model: nn.Module, support_x: torch.Tensor, support_y: torch.Tensor,
                    query_x: torch.Tensor, steps: int) -> torch.Tensor:  # fmt: skip
    """``[T, Q, ...]``: each task's query outputs after ``steps`` steps of the algorithm's own
    adaptation on its support set (first order), at the model's weights: what a served model returns."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    return per_task(
        model, lambda sx, sy, qx: algo.query_outputs(model, params, buffers, sx, sy, qx, steps), (support_x, support_y, query_x)
    )


def per_task(model: nn.Module, fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``fn`` of one task's tensors, vmapped over the tasks (the first dimension of each), with the
    model in eval mode (running-statistics norms use their estimates; batch-statistics ones do not
    care) and gradients on for the inner loop; detached."""
    # On CPU, vmapping many tasks' convolutions (each task has its own adapted weights) runs as one
    # large grouped convolution, slower than one task at a time (docs/performance.md); small dense nets (regression)
    # and GPUs do better batched. Image inputs are [T, N, C, H, W].
    chunk = 1 if tensors[0].device.type == "cpu" and tensors[0].dim() == 5 else None
    training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            return vmap(fn, chunk_size=chunk)(*tensors).detach()
    finally:
        model.train(training)
