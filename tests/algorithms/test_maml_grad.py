"""The MAML meta-gradient against computations that share no code with it.

The reference below uses only ``torch.autograd.grad`` on a hand-written MLP forward (no
``torch.func``): second-order MAML keeps the inner gradients in the graph (``create_graph=True``),
first-order MAML detaches them. Central finite differences check the second-order value again.
"""
from __future__ import annotations

import pytest
import torch

from distmeta.algorithms import inner_loop, meta_grad, meta_grad_loop
from distmeta.models import MLP
from distmeta.tasks import TRAIN, SineFamily


def _setup(dtype=torch.float64, hidden=(8, 8), tasks=4, shots=5, query=6, seed=0):
    torch.manual_seed(seed)
    model = MLP(1, hidden, 1).to(dtype)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    batch = SineFamily(shots=shots, query=query).sample(seed, TRAIN, 0, range(tasks), dtype=dtype)
    return model, params, batch


def _mlp(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Hand-written forward of MLP: Linear-ReLU-...-Linear, weights as [W0, b0, W1, b1, ...]."""
    h = x
    n = len(weights) // 2
    for i in range(n):
        h = h @ weights[2 * i].T + weights[2 * i + 1]
        if i < n - 1:
            h = torch.relu(h)
    return h


def _reference(params, batch, steps, lr, first_order):
    """Sum over tasks of d L_query(adapted) / d theta with explicit autograd."""
    theta = [p.clone().requires_grad_(True) for p in params.values()]
    total = [torch.zeros_like(p) for p in theta]
    for i in range(len(batch)):
        sx, sy, qx, qy = (t[i] for t in batch.tensors())
        fast = theta
        for _ in range(steps):
            loss = ((_mlp(fast, sx) - sy) ** 2).mean()
            grads = torch.autograd.grad(loss, fast, create_graph=not first_order)
            fast = [w - lr * g for w, g in zip(fast, grads)]
        qloss = ((_mlp(fast, qx) - qy) ** 2).mean()
        for acc, g in zip(total, torch.autograd.grad(qloss, theta)):
            acc += g
    return dict(zip(params, total))


def _rel_err(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a).sqrt()
    den = sum((b[k] ** 2).sum() for k in b).sqrt()
    return (num / den).item()


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("name, first_order", [("maml", False), ("fomaml", True)])
def test_meta_gradient_matches_explicit_autograd_reference(name, first_order, steps):
    """Second order against explicit double backward; first order against the detached reference."""
    model, params, batch = _setup()
    ours = meta_grad(model, params, {}, batch, inner_loop(name, steps=steps, lr=0.05)).grads
    ref = _reference(params, batch, steps, 0.05, first_order=first_order)
    assert _rel_err(ours, ref) < 1e-5


def test_first_and_second_order_differ():
    """Guards the two tests above against a reference that ignores ``create_graph``."""
    model, params, batch = _setup()
    so = meta_grad(model, params, {}, batch, inner_loop("maml", steps=2, lr=0.1)).grads
    fo = meta_grad(model, params, {}, batch, inner_loop("fomaml", steps=2, lr=0.1)).grads
    assert _rel_err(fo, so) > 1e-3


def test_second_order_maml_matches_central_finite_differences():
    model, params, batch = _setup()
    inner = inner_loop("maml", steps=2, lr=0.05)
    g = meta_grad(model, params, {}, batch, inner).grads
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
        eps = 1e-5

        def objective(sign):
            shifted = {k: p + sign * eps * direction[k] for k, p in params.items()}
            return meta_grad(model, shifted, {}, batch, inner).losses.sum()

        fd = (objective(1) - objective(-1)) / (2 * eps)
        analytic = sum((g[k] * direction[k]).sum() for k in params)
        assert abs(fd - analytic) <= 1e-3 * abs(analytic)


@pytest.mark.parametrize("name", ["maml", "fomaml"])
def test_vmapped_path_equals_loop_twin(name):
    model, params, batch = _setup(dtype=torch.float32, hidden=(40, 40), tasks=7, shots=10, query=10)
    inner = inner_loop(name, steps=2, lr=0.01)
    batched = meta_grad(model, params, {}, batch, inner)
    looped = meta_grad_loop(model, params, {}, batch, inner)
    assert _rel_err(batched.grads, looped.grads) < 1e-5
    torch.testing.assert_close(batched.losses, looped.losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched.preadapt, looped.preadapt, rtol=1e-5, atol=1e-6)


def test_meta_grad_is_additive_over_task_subsets():
    """What the shards rely on: the sum over a split meta-batch equals the whole batch's sum."""
    model, params, batch = _setup(tasks=6)
    inner = inner_loop("maml", steps=1, lr=0.05)
    whole = meta_grad(model, params, {}, batch, inner).grads
    from distmeta.tasks import TaskBatch

    first = TaskBatch(*(t[:2] for t in batch.tensors()))
    rest = TaskBatch(*(t[2:] for t in batch.tensors()))
    a = meta_grad(model, params, {}, first, inner).grads
    b = meta_grad(model, params, {}, rest, inner).grads
    assert _rel_err({k: a[k] + b[k] for k in a}, whole) < 1e-12
