"""The per-task loop the reference libraries train with (torch only, so it also runs where only
torch is installed: ``scripts/gpu_check.sh``)."""

from __future__ import annotations

import torch
from torch.func import functional_call

from distmeta.algorithms.base import LOSSES
from distmeta.tasks import TaskBatch


def loop_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, tasks: TaskBatch, loss_name: str, lr: float, steps: int, first_order: bool
) -> float:
    """One meta-step the per-task way; returns the mean query loss."""
    loss_fn = LOSSES[loss_name].fn
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    opt.zero_grad(set_to_none=True)
    total = torch.zeros(())
    for i in range(len(tasks)):
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        fast = params
        for _ in range(steps):
            inner = loss_fn(functional_call(model, dict(zip(names, fast)), (sx,)), sy)
            grads = torch.autograd.grad(inner, fast, create_graph=not first_order)
            fast = [w - lr * g for w, g in zip(fast, grads)]
        total = total + loss_fn(functional_call(model, dict(zip(names, fast)), (qx,)), qy)
    meta_loss = total / len(tasks)
    meta_loss.backward()
    opt.step()
    return meta_loss.item()
