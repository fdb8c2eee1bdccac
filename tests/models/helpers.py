"""Checks the backbone tests share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distmeta.models import BatchStatNorm2d


def randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial affine parameters in every norm, so their gradients are exercised."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, BatchStatNorm2d):  # RunningBatchNorm2d too
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def assert_batch_norm_to_second_order(norm: BatchStatNorm2d, x: torch.Tensor) -> None:
    """``norm`` in training mode equals ``F.batch_norm`` with batch statistics: values, first
    derivatives, and the derivatives of a function of those (double backward)."""
    ref = F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    ours = norm(x)
    torch.testing.assert_close(ours, ref)
    probe = torch.randn_like(ref)
    g_ours = torch.autograd.grad((ours * probe).sum() ** 2, [x, norm.weight], create_graph=True)
    g_ref = torch.autograd.grad((ref * probe).sum() ** 2, [x, norm.weight], create_graph=True)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)
    hv_ours = torch.autograd.grad(sum((g * g).sum() for g in g_ours), [x, norm.weight])
    hv_ref = torch.autograd.grad(sum((g * g).sum() for g in g_ref), [x, norm.weight])
    for a, b in zip(hv_ours, hv_ref):
        torch.testing.assert_close(a, b)
