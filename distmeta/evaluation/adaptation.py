"""Adaptation curves: query MSE after 0..n inner SGD steps, for many tasks at once."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import grad, vmap

from distmeta.algorithms import forward, mse
from distmeta.tasks import TaskBatch


def adaptation_curve(model: nn.Module, params: dict[str, torch.Tensor], tasks: TaskBatch, lr: float, max_steps: int) -> torch.Tensor:
    """[T, max_steps + 1] query MSE of each task after 0, 1, ..., ``max_steps`` SGD steps on its support set.

    Evaluation needs no meta-gradient, so each inner step is plain (first-order) SGD, vmapped over tasks.
    """
    buffers = dict(model.named_buffers())
    params = {k: p.detach() for k, p in params.items()}

    def curve(sx, sy, qx, qy):
        p = params
        out = [mse(forward(model, p, buffers, qx), qy)]
        for _ in range(max_steps):
            g = grad(lambda q: mse(forward(model, q, buffers, sx), sy))(p)
            p = {k: v - lr * g[k] for k, v in p.items()}
            out.append(mse(forward(model, p, buffers, qx), qy))
        return torch.stack(out)

    with torch.enable_grad():
        return vmap(curve)(*tasks.tensors())
