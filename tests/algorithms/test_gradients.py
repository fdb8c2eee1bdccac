"""Every algorithm's meta-gradient against computations that share no code with it.

The references use only ``torch.autograd.grad`` on a hand-written MLP forward (no ``torch.func``):
second order keeps the inner gradients in the graph (``create_graph=True``), first order detaches
them. Central finite differences check the second-order values again, and each batched path is
compared with its per-task loop twin and its chunked and checkpointed variants.
"""

from __future__ import annotations

import pytest
import torch

from distmeta.algorithms import build, meta_grad, meta_grad_loop
from distmeta.models import MLP
from distmeta.tasks import TRAIN, SineFamily, TaskBatch
from tests.algorithms.helpers import assert_matches_finite_differences

LR = 0.05


def _setup(name="maml", dtype=torch.float64, hidden=(8, 8), tasks=4, shots=5, query=6, seed=0, **kw):
    torch.manual_seed(seed)
    algo = build(name, lr=LR, **kw)
    model = algo.meta_model(MLP(1, hidden, 1)).to(dtype)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    batch = SineFamily(shots=shots, query=query).sample(seed, TRAIN, 0, range(tasks), dtype=dtype)
    return algo, model, params, batch


def _mlp(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Hand-written forward of MLP: Linear-ReLU-...-Linear, weights as [W0, b0, W1, b1, ...]."""
    h = x
    n = len(weights) // 2
    for i in range(n):
        h = h @ weights[2 * i].T + weights[2 * i + 1]
        if i < n - 1:
            h = torch.relu(h)
    return h


def _mse(weights, x, y):
    return ((_mlp(weights, x) - y) ** 2).mean()


def _reference(theta_values, batch, steps, first_order, adapted=None, step_sizes=None, clip=0.0):
    """Sum over tasks of d L_query(adapted) / d (theta, step sizes) with explicit autograd.

    ``adapted``: indices of the weights the inner loop changes (default all; ANIL: the head);
    ``step_sizes``: per-weight learned step sizes (MetaSGD), differentiated too; ``clip``: each
    inner gradient's entries clamped to [-clip, clip]."""
    theta = [p.clone().requires_grad_(True) for p in theta_values]
    lrs = [a.clone().requires_grad_(True) for a in step_sizes] if step_sizes is not None else None
    wrt = theta + (lrs or [])
    adapted = set(range(len(theta))) if adapted is None else set(adapted)
    total = [torch.zeros_like(p) for p in wrt]
    for i in range(len(batch)):
        sx, sy, qx, qy = (t[i] for t in batch.tensors())
        fast = list(theta)
        for _ in range(steps):
            grads = torch.autograd.grad(_mse(fast, sx, sy), fast, create_graph=not first_order)
            grads = [g.clamp(-clip, clip) for g in grads] if clip else grads
            fast = [w - ((lrs[j] if lrs else LR) * g) if j in adapted else w for j, (w, g) in enumerate(zip(fast, grads))]
        for acc, g in zip(total, torch.autograd.grad(_mse(fast, qx, qy), wrt, allow_unused=True)):
            if g is not None:
                acc += g
    return total


def _rel_err(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a).sqrt()
    den = sum((b[k] ** 2).sum() for k in b).sqrt()
    return (num / den).item()


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("name, first_order", [("maml", False), ("fomaml", True)])
def test_maml_matches_explicit_autograd_reference(name, first_order, steps, checkpoint):
    """Second order against explicit double backward; first order against the detached reference;
    the checkpointed (recomputed inner loop) gradient against the same reference."""
    algo, model, params, batch = _setup(name, steps=steps, checkpoint=checkpoint)
    ours = meta_grad(algo, model, params, {}, batch).grads
    ref = dict(zip(params, _reference(list(params.values()), batch, steps, first_order)))
    assert _rel_err(ours, ref) < 1e-10


@pytest.mark.parametrize("checkpoint", [False, True])
def test_clamped_inner_gradients_match_the_reference_to_second_order(checkpoint):
    """``algorithm.inner_grad_clip``: the clamp is part of each inner step, differentiated through
    (zero where it binds) on the vmapped path, the per-task loop and the checkpointed recursion."""
    clip = 0.3
    algo, model, params, batch = _setup("maml", steps=3, checkpoint=checkpoint, inner_grad_clip=clip)
    theta = [p.clone().requires_grad_() for p in params.values()]
    first = torch.autograd.grad(_mse(theta, batch.support_x[0], batch.support_y[0]), theta)
    entries = torch.cat([g.flatten() for g in first]).abs()
    assert (entries > clip).any() and (entries < clip).any()  # it binds on some entries, not all
    ref = dict(zip(params, _reference(list(params.values()), batch, 3, False, clip=clip)))
    assert _rel_err(meta_grad(algo, model, params, {}, batch).grads, ref) < 1e-10
    assert _rel_err(meta_grad_loop(algo, model, params, {}, batch).grads, ref) < 1e-10
    unclipped = dict(zip(params, _reference(list(params.values()), batch, 3, False)))
    assert _rel_err(ref, unclipped) > 1e-3
    assert_matches_finite_differences(algo, model, params, batch)


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("first_order", [False, True])
def test_anil_equals_maml_restricted_to_the_head(first_order, checkpoint):
    """ANIL's gradient (body included) is MAML's with an inner loop that only moves the head."""
    algo, model, params, batch = _setup("anil", steps=3, first_order=first_order, checkpoint=checkpoint)
    head = [i for i, k in enumerate(params) if k.startswith("head.")]
    assert len(head) == 2
    ours = meta_grad(algo, model, params, {}, batch).grads
    ref = dict(zip(params, _reference(list(params.values()), batch, 3, first_order, adapted=head)))
    assert _rel_err(ours, ref) < 1e-10
    body = [k for k in params if k.startswith("body.")]
    assert all(ours[k].abs().sum() > 0 for k in body)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_metasgd_matches_reference_for_weights_and_learned_step_sizes(checkpoint):
    algo, model, params, batch = _setup("metasgd", steps=2, checkpoint=checkpoint)
    with torch.no_grad():  # distinct step sizes per element, so their gradients are exercised
        for k in params:
            if k.startswith("lrs."):
                params[k] = LR * (0.5 + torch.rand_like(params[k]))
    net = [k for k in params if k.startswith("net.")]
    lrs = [k for k in params if k.startswith("lrs.")]
    assert len(net) == len(lrs) == 6
    ours = meta_grad(algo, model, params, {}, batch).grads
    ref_values = _reference([params[k] for k in net], batch, 2, False, step_sizes=[params[k] for k in lrs])
    ref = dict(zip(net + lrs, ref_values))
    assert _rel_err(ours, ref) < 1e-10
    assert all(ours[k].abs().sum() > 0 for k in lrs)


def test_reptile_one_step_equals_closed_form():
    """One full-batch SGD step: theta - phi = lr * grad L_S(theta)."""
    algo, model, params, batch = _setup("reptile", steps=1, use_query=False)
    ours = meta_grad(algo, model, params, {}, batch).grads
    total = [torch.zeros_like(p) for p in params.values()]
    for i in range(len(batch)):
        sx, sy = batch.support_x[i], batch.support_y[i]
        w = [p.clone().requires_grad_(True) for p in params.values()]
        for acc, g in zip(total, torch.autograd.grad(_mse(w, sx, sy), w)):
            acc += LR * g
    assert _rel_err(ours, dict(zip(params, total))) < 1e-12


def test_reptile_many_minibatch_steps_equal_a_plain_sgd_loop():
    algo, model, params, batch = _setup("reptile", steps=4, inner_batch=4, use_query=True)
    ours = meta_grad(algo, model, params, {}, batch).grads
    n = batch.support_x.shape[1] + batch.query_x.shape[1]
    total = [torch.zeros_like(p) for p in params.values()]
    for i in range(len(batch)):
        x = torch.cat([batch.support_x[i], batch.query_x[i]])
        y = torch.cat([batch.support_y[i], batch.query_y[i]])
        net = MLP(1, (8, 8), 1).double()
        torch.nn.utils.vector_to_parameters(torch.cat([p.flatten() for p in params.values()]), net.parameters())
        opt = torch.optim.SGD(net.parameters(), lr=LR)
        for rows in algo.minibatches(n):
            opt.zero_grad()
            ((net(x[rows]) - y[rows]) ** 2).mean().backward()
            opt.step()
        for acc, p, phi in zip(total, params.values(), net.parameters()):
            acc += p - phi.detach()
    assert _rel_err(ours, dict(zip(params, total))) < 1e-12
    assert len({tuple(r.tolist()) for r in algo.minibatches(n)}) == 4  # the steps see different examples


@pytest.mark.parametrize("name", ["maml", "anil", "metasgd"])
def test_second_order_matches_central_finite_differences(name):
    algo, model, params, batch = _setup(name, steps=2)
    g = meta_grad(algo, model, params, {}, batch).grads
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
        eps = 1e-5

        def objective(sign, eps=eps, direction=direction):
            shifted = {k: p + sign * eps * direction[k] for k, p in params.items()}
            return meta_grad(algo, model, shifted, {}, batch).metrics["loss"].sum()

        fd = (objective(1) - objective(-1)) / (2 * eps)
        analytic = sum((g[k] * direction[k]).sum() for k in params)
        assert abs(fd - analytic) <= 1e-4 * abs(analytic)


def test_first_and_second_order_differ():
    """Guards the reference tests against a reference that ignores ``create_graph``."""
    _, model, params, batch = _setup()
    so = meta_grad(build("maml", steps=2, lr=0.1), model, params, {}, batch).grads
    fo = meta_grad(build("fomaml", steps=2, lr=0.1), model, params, {}, batch).grads
    assert _rel_err(fo, so) > 1e-3


@pytest.mark.parametrize(
    "name, kw",
    [
        ("maml", {}),
        ("fomaml", {}),
        ("maml", {"checkpoint": True}),
        ("anil", {}),
        ("metasgd", {}),
        ("reptile", {"inner_batch": 7}),
    ],
)
def test_vmapped_chunked_and_looped_paths_agree(name, kw):
    algo, model, params, batch = _setup(name, dtype=torch.float32, hidden=(40, 40), tasks=7, shots=10, query=10, steps=2, **kw)
    batched = meta_grad(algo, model, params, {}, batch)
    chunked = meta_grad(algo, model, params, {}, batch, chunk_size=3)
    looped = meta_grad_loop(algo, model, params, {}, batch)
    assert _rel_err(batched.grads, looped.grads) < 1e-5
    assert _rel_err(chunked.grads, looped.grads) < 1e-5
    assert set(batched.metrics) == set(looped.metrics) >= {"loss", "preadapt_loss"}
    for key in batched.metrics:
        torch.testing.assert_close(batched.metrics[key], looped.metrics[key], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(chunked.metrics[key], looped.metrics[key], rtol=1e-5, atol=1e-6)


def test_meta_grad_is_additive_over_task_subsets():
    """What the shards rely on: the sum over a split meta-batch equals the whole batch's sum."""
    algo, model, params, batch = _setup(tasks=6)
    whole = meta_grad(algo, model, params, {}, batch).grads
    a = meta_grad(algo, model, params, {}, TaskBatch(*(t[:2] for t in batch.tensors()))).grads
    b = meta_grad(algo, model, params, {}, TaskBatch(*(t[2:] for t in batch.tensors()))).grads
    assert _rel_err({k: a[k] + b[k] for k in a}, whole) < 1e-12
