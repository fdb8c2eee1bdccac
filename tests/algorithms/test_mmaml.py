"""MMAML's meta-gradient, with either modulation network, against an explicit per-task double
backward written out here (float64, 1e-8; the LSTM encoder's through ``torch.nn.LSTM`` carrying its
weights), central finite differences, both batching paths and the checkpointed recursion; zero FiLM
parameters leave the plain network, and a fresh modulation network already modulates it."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from distmeta.algorithms import build, meta_grad, meta_grad_loop
from distmeta.models import MLP
from distmeta.tasks import TRAIN, SineFamily
from tests.algorithms.helpers import assert_matches_finite_differences, glyph_network_and_tasks

LR = 0.05


ENCODERS = ["set", "lstm"]
READERS = [(e, standardize) for standardize in (False, True) for e in ENCODERS]
"""(encoder, standardize): every modulation network, reading raw or standardised targets."""


def setup(steps: int, first_order: bool = False, checkpoint: bool = False, encoder: str = "set", standardize: bool = False):
    """A 1-8-8-1 task network, a width-6 modulation network; every weight drawn at random."""
    torch.manual_seed(0)
    algo = build("mmaml", lr=LR, steps=steps, first_order=first_order, checkpoint=checkpoint, hidden=6, encoder=encoder,
                 standardize=standardize)  # fmt: skip
    model = algo.meta_model(MLP(1, (8, 8), 1)).double()
    gen = torch.Generator().manual_seed(3)
    params = {k: 0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64) for k, p in model.named_parameters()}
    batch = SineFamily(shots=5, query=6).sample(0, TRAIN, 0, range(4), dtype=torch.float64)
    return algo, model, params, batch


def explicit_pairs(sx: torch.Tensor, sy: torch.Tensor, standardize: bool) -> torch.Tensor:
    """Each support pair's row: (x, y), or (x, standardised y, the set's mean, its log std)."""
    if not standardize:
        return torch.cat([sx, sy], 1)
    mean, std = sy.mean(), torch.sqrt(sy.var(unbiased=False) + 1e-4)
    ones = torch.ones_like(sy)
    return torch.cat([sx, (sy - mean) / std, mean * ones, torch.log(std) * ones], 1)


def explicit_tau(p: dict, sx: torch.Tensor, sy: torch.Tensor, standardize: bool = False) -> torch.Tensor:
    pairs = explicit_pairs(sx, sy, standardize)
    if "modulator.cells.0.gates.weight" in p:
        return lstm_tau(p, pairs)
    h = torch.relu(pairs @ p["modulator.pair.0.weight"].T + p["modulator.pair.0.bias"])
    h = torch.relu(h @ p["modulator.pair.2.weight"].T + p["modulator.pair.2.bias"])
    return h.mean(0) @ p["modulator.film.weight"].T + p["modulator.film.bias"]


def lstm_tau(p: dict, pairs: torch.Tensor, hidden: int = 6) -> torch.Tensor:
    """torch.nn.LSTM (2 layers, bidirectional) with the encoder's cells as its weights: each cell's
    one gate matrix split into the input and hidden parts, its bias as the input bias."""
    lstm = torch.nn.LSTM(pairs.shape[1], hidden, num_layers=2, bidirectional=True, dtype=torch.float64)
    weights = {}
    for layer, width in enumerate([pairs.shape[1], 2 * hidden]):
        for direction, suffix in enumerate(["", "_reverse"]):
            gates = f"modulator.cells.{2 * layer + direction}.gates."
            weights[f"weight_ih_l{layer}{suffix}"] = p[gates + "weight"][:, :width]
            weights[f"weight_hh_l{layer}{suffix}"] = p[gates + "weight"][:, width:]
            weights[f"bias_ih_l{layer}{suffix}"] = p[gates + "bias"]
            weights[f"bias_hh_l{layer}{suffix}"] = torch.zeros(4 * hidden, dtype=torch.float64)
    out, _ = functional_call(lstm, weights, (pairs,))
    embedding = torch.cat([out[-1, :hidden], out[0, hidden:]])  # forward's last, backward's first
    return embedding @ p["modulator.film.weight"].T + p["modulator.film.bias"]


def explicit_forward(w: list, tau: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The MLP with FiLM after each hidden Linear: (1 + tanh gamma) (W h + b) + beta, then ReLU."""
    g1, b1, g2, b2 = torch.tanh(tau[:8]), tau[8:16], torch.tanh(tau[16:24]), tau[24:32]
    h = torch.relu((1 + g1) * (x @ w[0].T + w[1]) + b1)
    h = torch.relu((1 + g2) * (h @ w[2].T + w[3]) + b2)
    return h @ w[4].T + w[5]


def explicit_grad(params: dict, batch, steps: int, first_order: bool, standardize: bool = False) -> dict:
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    net = [
        p[k]
        for k in (
            "net.body.0.weight",
            "net.body.0.bias",
            "net.body.2.weight",
            "net.body.2.bias",
            "net.head.weight",
            "net.head.bias",
        )
    ]
    total = 0
    for i in range(len(batch)):
        sx, sy, qx, qy = (t[i] for t in batch.tensors())
        tau = explicit_tau(p, sx, sy, standardize)
        fast = list(net)
        for _ in range(steps):
            grads = torch.autograd.grad(((explicit_forward(fast, tau, sx) - sy) ** 2).mean(), fast, create_graph=not first_order)
            fast = [w - LR * g for w, g in zip(fast, grads)]
        total = total + ((explicit_forward(fast, tau, qx) - qy) ** 2).mean()
    return dict(zip(p, torch.autograd.grad(total, list(p.values()))))


@pytest.mark.parametrize("encoder, standardize", READERS)
@pytest.mark.parametrize("steps, first_order", [(1, False), (3, False), (2, True)])
def test_meta_gradient_equals_explicit_double_backward_on_every_path(steps, first_order, encoder, standardize):
    algo, model, params, batch = setup(steps, first_order, encoder=encoder, standardize=standardize)
    truth = explicit_grad(params, batch, steps, first_order, standardize)
    checkpointed, _, _, _ = setup(steps, first_order, checkpoint=True, encoder=encoder, standardize=standardize)
    outs = [meta_grad(algo, model, params, {}, batch), meta_grad_loop(algo, model, params, {}, batch),
            meta_grad(checkpointed, model, params, {}, batch)]  # fmt: skip
    for out in outs:
        for k in params:
            torch.testing.assert_close(out.grads[k], truth[k], rtol=1e-8, atol=1e-10)
    assert all(truth[k].abs().max() > 0 for k in params if k.startswith("modulator."))  # the encoder learns


@pytest.mark.parametrize("encoder, standardize", READERS)
def test_meta_gradient_matches_central_finite_differences(encoder, standardize):
    assert_matches_finite_differences(*setup(2, encoder=encoder, standardize=standardize))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_standardized_targets_reach_the_encoder_as_shape_and_scale_apart(encoder):
    algo, model, params, batch = setup(1, encoder=encoder, standardize=True)
    sx, sy = batch.tensors()[0][0], batch.tensors()[1][0]
    rows, moved = model.modulator.pairs(sx, sy), model.modulator.pairs(sx, 3.0 * sy - 2.0)
    # an affine change of the targets leaves their standardised column, moves only mean and log std
    torch.testing.assert_close(moved[:, 1], rows[:, 1], rtol=1e-4, atol=1e-4)  # up to the 1e-4 floor
    torch.testing.assert_close(moved[:, 2], 3.0 * rows[:, 2] - 2.0)
    torch.testing.assert_close(moved[:, 3] - rows[:, 3], torch.full_like(sy[:, 0], math.log(3.0)), rtol=1e-4, atol=1e-4)
    # a constant set stays finite, and so does tau's derivative in its targets
    flat = torch.full_like(sy, 1.5)
    assert torch.isfinite(model.modulator.pairs(sx, flat)).all()
    _, slow = algo.split(params)
    tau_of = lambda y: algo.condition(model, slow, {}, sx, y)["tau"]  # noqa: E731
    assert torch.isfinite(tau_of(flat)).all()
    assert torch.isfinite(torch.autograd.functional.jacobian(tau_of, flat)).all()


def test_standardize_refuses_class_labels():
    net, _ = glyph_network_and_tasks("mlp", tasks=1)
    with pytest.raises(ValueError, match="regression targets"):
        build("mmaml", loss="cross_entropy", lr=0.1, steps=1, standardize=True).meta_model(net)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("backbone", ["mlp", "conv4"])
def test_zero_film_leaves_the_plain_network_and_a_fresh_encoder_modulates_it(backbone, encoder):
    net, task = glyph_network_and_tasks(backbone, tasks=2)
    algo = build("mmaml", loss="cross_entropy", lr=0.1, steps=1, hidden=8, encoder=encoder)
    model = algo.meta_model(net)
    params = {k: p.detach() for k, p in model.named_parameters()}
    fast, slow = algo.split(params)
    one = task.unbatched(0)
    tau = algo.condition(model, slow, {}, one.support_x, one.support_y)["tau"]
    assert tau.numel() == 2 * (16 if backbone == "mlp" else 4 * 8)
    plain = net(one.query_x)
    torch.testing.assert_close(model(one.query_x, torch.zeros_like(tau)), plain)
    torch.testing.assert_close(model(one.query_x), plain)
    assert tau.abs().max() > 0 and not torch.allclose(model(one.query_x, tau), plain)
    g = meta_grad(algo, model, params, {}, task).grads
    # the outer loss reaches the whole modulation network, the encoder beneath the FiLM map too
    assert all(g[k].abs().max() > 0 for k in params if k.startswith("modulator.") and k.endswith("weight"))


def test_the_lstm_encoder_reads_the_support_set_in_order_and_the_set_encoder_does_not():
    sets = {}
    for encoder in ENCODERS:
        algo, model, params, batch = setup(1, encoder=encoder)
        _, slow = algo.split(params)
        sx, sy = batch.tensors()[0][0], batch.tensors()[1][0]
        order = torch.randperm(len(sx), generator=torch.Generator().manual_seed(1))
        taus = [algo.condition(model, slow, {}, x, y)["tau"] for x, y in ((sx, sy), (sx[order], sy[order]))]
        sets[encoder] = torch.allclose(*taus, rtol=1e-12, atol=1e-12)
    assert sets == {"set": True, "lstm": False}


def test_an_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="set, lstm"):
        build("mmaml", lr=LR, steps=1, encoder="gru")
