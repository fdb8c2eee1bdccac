"""Conv4 under second-order MAML: the batch-norm trap of torch 2.13 (DESIGN section 8).

``vmap`` over the fused ``F.batch_norm`` gives a wrong second-order gradient; Conv4 normalises
with mean/var ops instead. Checked here, in float64, under every batching path:
- its normalisation equals ``F.batch_norm`` (training mode, no running stats) in value and in
  first and second derivatives, in plain autograd;
- the vmapped MAML meta-gradient equals the per-task loop twin, an explicit double-backward
  reference through a network that uses the standard ``nn.BatchNorm2d``, and central finite
  differences.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distmeta.algorithms import MAML, InnerLoop, meta_grad, meta_grad_loop
from distmeta.models import BatchStatNorm2d, Conv4
from distmeta.tasks import TaskBatch
from tests.models.helpers import assert_batch_norm_to_second_order, randomize_norms

WAYS, SHOTS, QUERY, SIZE = 3, 2, 2, 16


def _tasks(num_tasks=3, seed=0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(WAYS).repeat_interleave(SHOTS)
    qlabels = torch.arange(WAYS).repeat_interleave(QUERY)
    sx = torch.randn(num_tasks, WAYS * SHOTS, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    qx = torch.randn(num_tasks, WAYS * QUERY, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    return TaskBatch(sx, labels.expand(num_tasks, -1), qx, qlabels.expand(num_tasks, -1))


def _model(seed=0) -> Conv4:
    torch.manual_seed(seed)
    return randomize_norms(Conv4(in_channels=1, num_classes=WAYS, hidden=4, image_size=SIZE).double())


def _rel(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a).sqrt()
    return (num / sum((b[k] ** 2).sum() for k in b).sqrt()).item()


def test_batch_stat_norm_equals_functional_batch_norm_to_second_order():
    torch.manual_seed(1)
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert_batch_norm_to_second_order(randomize_norms(BatchStatNorm2d(3).double()), x)


class _StandardConv4(nn.Module):
    """The same network with PyTorch's own BatchNorm2d (batch statistics), for the reference."""

    def __init__(self, ours: Conv4):
        super().__init__()
        blocks = []
        for block in ours.body[:-1]:
            conv, norm = block[0], block[1]
            bn = nn.BatchNorm2d(conv.out_channels, eps=norm.eps, track_running_stats=False).double()
            blocks += [conv, bn, nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        self.head = ours.head

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def _standard_reference(model: Conv4, tasks: TaskBatch, steps: int, lr: float) -> dict:
    """Explicit per-task double backward (no torch.func) through nn.BatchNorm2d."""
    std = _StandardConv4(model)
    names = [n for n, _ in model.named_parameters()]
    # map our parameter order onto the standard network's parameters (conv weight, bn, conv weight, bn, ..., head)
    std_params = [
        p for m in std.features if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) for p in (m.weight, m.bias) if p is not None
    ]
    std_params += [std.head.weight, std.head.bias]
    theta = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    total = [torch.zeros_like(t) for t in theta]

    def run(weights, x):
        it = iter(weights)
        h = x
        for m in std.features:
            if isinstance(m, nn.Conv2d):
                h = F.conv2d(h, next(it), None, padding=1)  # Conv4 has no conv bias
            elif isinstance(m, nn.BatchNorm2d):
                h = F.batch_norm(h, None, None, next(it), next(it), training=True, eps=m.eps)
            elif isinstance(m, nn.ReLU):
                h = F.relu(h)
            else:
                h = F.max_pool2d(h, 2)
        return F.linear(h.flatten(1), next(it), next(it))

    assert len(std_params) == len(theta) == len(names)
    for i in range(len(tasks)):
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        fast = theta
        for _ in range(steps):
            grads = torch.autograd.grad(F.cross_entropy(run(fast, sx), sy), fast, create_graph=True)
            fast = [w - lr * g for w, g in zip(fast, grads)]
        for acc, g in zip(total, torch.autograd.grad(F.cross_entropy(run(fast, qx), qy), theta)):
            acc += g
    return dict(zip(names, total))


@pytest.mark.parametrize("steps", [1, 2])
def test_conv4_second_order_maml_under_vmap_loop_reference_and_finite_differences(steps):
    model, tasks = _model(), _tasks()
    params = {k: p.detach() for k, p in model.named_parameters()}
    algo = MAML(loss="cross_entropy", inner=InnerLoop(steps=steps, lr=0.1))

    batched = meta_grad(algo, model, params, {}, tasks)
    looped = meta_grad_loop(algo, model, params, {}, tasks)
    reference = _standard_reference(model, tasks, steps, 0.1)
    assert _rel(batched.grads, looped.grads) < 1e-9
    assert _rel(batched.grads, reference) < 1e-9

    gen = torch.Generator().manual_seed(2)
    direction = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
    eps = 1e-7  # ReLU and max-pool are piecewise smooth: a larger step can cross a kink

    def shifted(sign):
        return (
            meta_grad(algo, model, {k: p + sign * eps * direction[k] for k, p in params.items()}, {}, tasks).metrics["loss"].sum()
        )

    fd = (shifted(1) - shifted(-1)) / (2 * eps)
    analytic = sum((batched.grads[k] * direction[k]).sum() for k in params)
    assert abs(fd - analytic) <= 1e-6 * abs(analytic)


def test_conv4_shapes():
    assert Conv4(1, 5, 64, 28)(torch.randn(7, 1, 28, 28)).shape == (7, 5)
    assert Conv4(3, 5, 32, 84)(torch.randn(2, 3, 84, 84)).shape == (2, 5)
    with pytest.raises(ValueError, match="too small"):
        Conv4(1, 5, 8, 8)
