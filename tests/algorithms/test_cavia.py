"""CAVIA's meta-gradient against an explicit per-task double backward written out here (float64,
1e-8), central finite differences and both batching paths; with a zero context and no adaptation
the modulated network is the plain one."""

from __future__ import annotations

import pytest
import torch

from distmeta.algorithms import build, meta_grad, meta_grad_loop
from distmeta.models import MLP
from distmeta.tasks import TRAIN, SineFamily
from tests.algorithms.helpers import assert_matches_finite_differences, glyph_network_and_tasks

LR, CONTEXTS = 0.5, 3


def setup(steps: int, first_order: bool = False):
    torch.manual_seed(0)
    algo = build("cavia", lr=LR, steps=steps, first_order=first_order, contexts=CONTEXTS)
    model = algo.meta_model(MLP(1, (8, 8), 1)).double()
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    batch = SineFamily(shots=5, query=6).sample(0, TRAIN, 0, range(4), dtype=torch.float64)
    return algo, model, params, batch


def explicit_forward(p: dict, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """The MLP with phi concatenated to its input: [x, phi] @ [W0, W_phi]^T + b0, ReLU, ..."""
    w0 = torch.cat([p["net.body.0.weight"], p["film.shift.weight"]], 1)
    h = torch.relu(torch.cat([x, phi.expand(x.shape[0], -1)], 1) @ w0.T + p["net.body.0.bias"])
    h = torch.relu(h @ p["net.body.2.weight"].T + p["net.body.2.bias"])
    return h @ p["net.head.weight"].T + p["net.head.bias"]


def explicit_grad(params: dict, batch, steps: int, first_order: bool) -> dict:
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    total = 0
    for i in range(len(batch)):
        sx, sy, qx, qy = (t[i] for t in batch.tensors())
        phi = torch.zeros(CONTEXTS, dtype=torch.float64, requires_grad=True)
        for _ in range(steps):
            (g,) = torch.autograd.grad(((explicit_forward(p, sx, phi) - sy) ** 2).mean(), phi, create_graph=not first_order)
            phi = phi - LR * g
        total = total + ((explicit_forward(p, qx, phi) - qy) ** 2).mean()
    return dict(zip(p, torch.autograd.grad(total, list(p.values()))))


@pytest.mark.parametrize("steps, first_order", [(1, False), (3, False), (2, True)])
def test_meta_gradient_equals_explicit_double_backward_on_both_paths(steps, first_order):
    algo, model, params, batch = setup(steps, first_order)
    truth = explicit_grad(params, batch, steps, first_order)
    for out in (meta_grad(algo, model, params, {}, batch), meta_grad_loop(algo, model, params, {}, batch)):
        for k in params:
            torch.testing.assert_close(out.grads[k], truth[k], rtol=1e-8, atol=1e-10)
    second = explicit_grad(params, batch, 3, False) if first_order else None
    if second is not None:  # the check can fail: first order is another gradient
        assert any(not torch.allclose(truth[k], second[k], rtol=1e-3) for k in params)


def test_meta_gradient_matches_central_finite_differences():
    assert_matches_finite_differences(*setup(2))


@pytest.mark.parametrize("backbone", ["mlp", "conv4"])
def test_a_zero_context_leaves_the_plain_network_and_only_the_context_adapts(backbone):
    net, task = glyph_network_and_tasks(backbone)
    algo = build("cavia", loss="cross_entropy", lr=LR, steps=0, contexts=CONTEXTS)
    model = algo.meta_model(net)
    x = task.query_x[0]
    torch.testing.assert_close(model(x), net(x))
    params = {k: p.detach() for k, p in model.named_parameters()}
    assert set(algo.split(params)[0]) == {"context"}  # the inner loop's only fast weights
    moved = model(x, torch.ones(CONTEXTS))
    assert not torch.allclose(moved, net(x))  # a context does modulate
    scores = algo.scores(model, params, {}, task.unbatched(0), (0,))
    plain = (net(x).argmax(-1) == task.query_y[0]).float().mean()
    torch.testing.assert_close(scores[0], plain)


def test_cavia_refuses_networks_it_cannot_modulate():
    from distmeta.models import ModelSpec

    with pytest.raises(ValueError, match="context modulation needs an MLP or a Conv4 network, not ResNet12"):
        build("cavia").meta_model(ModelSpec("resnet12", (3, 32, 32), 5, widths=(8, 8, 8, 8)).build())
