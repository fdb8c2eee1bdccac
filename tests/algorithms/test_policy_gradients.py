"""Meta-RL meta-gradients: unbiased against a closed form, batched equal to the loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from distmeta.algorithms import build, meta_grad, meta_grad_loop
from distmeta.algorithms.rl import dice_objective
from distmeta.algorithms.rl.baseline import linear_baseline
from distmeta.algorithms.rl.surrogate import log_probs
from distmeta.models import GaussianMLP, ModelSpec
from distmeta.tasks.rl import navigation2d, quadratic_bandit

GOAL, ALPHA, TASKS, EPISODES = 1.0, 0.1, 400, 2000


@pytest.fixture(scope="module")
def bandit():
    """A linear Gaussian policy on the one-step bandit (mean = w + b at the constant observation)."""
    model = GaussianMLP(1, (), 1, init_std=0.5).double()
    with torch.no_grad():
        model.head.weight.fill_(0.2)
        model.head.bias.fill_(-0.1)
    params = {k: p.detach() for k, p in model.named_parameters()}
    tasks = quadratic_bandit((GOAL, GOAL), shots=EPISODES, query=EPISODES).sample(0, 0, 0, range(TASKS), dtype=torch.float64)
    return model, params, tasks


def expected_return(model, p):
    """E[-(a - g)^2] under N(mu, sigma^2): -((mu - g)^2 + sigma^2)."""
    mu = functional_call(model, p, (torch.ones(1, 1, dtype=torch.float64),))[0, 0]
    return -((mu - GOAL) ** 2 + torch.exp(2 * p["log_std"][0]))


def analytic(model, params, first_order: bool) -> torch.Tensor:
    """The MAML meta-gradient of the closed-form return: d/dtheta J(theta + alpha grad J(theta)),
    or (first order) grad J at the adapted point."""
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    g = torch.autograd.grad(expected_return(model, p), list(p.values()), create_graph=not first_order)
    adapted = {k: v + ALPHA * d for (k, v), d in zip(p.items(), g)}
    if first_order:
        adapted = {k: v.detach().requires_grad_() for k, v in adapted.items()}
        return torch.cat([d.reshape(-1) for d in torch.autograd.grad(expected_return(model, adapted), list(adapted.values()))])
    return torch.cat([d.reshape(-1) for d in torch.autograd.grad(expected_return(model, adapted), list(p.values()))])


def estimates(model, params, tasks, first_order: bool):
    """Per task (each its own episodes), the estimated gradient of the return (minus the loss's)."""
    algo = build("maml_rl", loss="return", steps=1, lr=ALPHA, first_order=first_order, normalize_advantages=False)
    traj = algo.prepare(model, params, {}, tasks)
    rows = [meta_grad(algo, model, params, {}, traj.slice(i, i + 1)).grads for i in range(len(tasks))]
    return traj, torch.stack([torch.cat([-g.reshape(-1) for g in row.values()]) for row in rows])


def within_ci(est: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """How many 95% confidence half-widths the mean estimate is from ``truth``, per coordinate."""
    return (est.mean(0) - truth).abs() / (1.96 * est.std(0) / math.sqrt(est.shape[0]))


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
def test_the_meta_gradient_estimate_converges_to_the_closed_form(bandit, first_order):
    model, params, tasks = bandit
    _, est = estimates(model, params, tasks, first_order)
    truth = analytic(model, params, first_order)
    assert (within_ci(est, truth) < 1).all(), (est.mean(0), truth)
    other = analytic(model, params, not first_order)  # the two differ by far more than the CI
    assert (within_ci(est, other) > 10).any()


def test_joint_pretraining_estimates_the_policy_gradient_at_the_meta_parameters(bandit):
    """``pretrain_rl`` (no inner loop): the estimate converges to grad J(theta) itself, not to
    either MAML meta-gradient."""
    model, params, tasks = bandit
    algo = build("pretrain_rl", loss="return", steps=1, lr=ALPHA, normalize_advantages=False)
    assert algo.inner.steps == 0  # the name forces it; the config's inner_steps are for fine-tuning at test
    traj = algo.prepare(model, params, {}, tasks)
    assert traj.inner_obs.shape[1] == 0
    est = torch.stack([torch.cat([-g.reshape(-1) for g in meta_grad(algo, model, params, {}, traj.slice(i, i + 1)).grads.values()])
                       for i in range(TASKS)])  # fmt: skip
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    truth = torch.cat([d.reshape(-1) for d in torch.autograd.grad(expected_return(model, p), list(p.values()))])
    assert (within_ci(est, truth) < 1).all(), (est.mean(0), truth)
    assert (within_ci(est, analytic(model, params, first_order=True)) > 10).any()


def test_the_plain_log_likelihood_surrogate_misses_the_second_order_term(bandit):
    """The check can fail: autograd through sum log pi * advantage (MAML-RL's surrogate) lacks
    the score-function part of the Hessian, and lands far outside the CI on the same episodes."""
    model, params, tasks = bandit
    traj, _ = estimates(model, params, tasks, first_order=False)

    def naive(i: int) -> torch.Tensor:
        p = {k: v.clone().requires_grad_() for k, v in params.items()}
        o, a, r = traj.inner_obs[i, 0], traj.inner_actions[i, 0], traj.inner_rewards[i, 0]
        inner = (log_probs(model, p, {}, o, a) * (r - linear_baseline(o, r, 0.99))).mean()
        g = torch.autograd.grad(inner, list(p.values()), create_graph=True)
        q = {k: v + ALPHA * d for (k, v), d in zip(p.items(), g)}
        outer = dice_objective(model, q, {}, traj.outer_obs[i], traj.outer_actions[i], traj.outer_rewards[i], 0.99)
        return torch.cat([d.reshape(-1) for d in torch.autograd.grad(outer, list(p.values()))])

    est = torch.stack([naive(i) for i in range(TASKS)])
    assert (within_ci(est, analytic(model, params, first_order=False)) > 10).any()


@pytest.mark.parametrize("steps", [1, 2])
def test_batched_meta_gradient_equals_the_per_task_loop(steps):
    """float64: vmap over tasks (torch.func inner steps) against one task at a time under plain
    autograd (``create_graph``), on the same navigation trajectories."""
    torch.manual_seed(0)
    model = ModelSpec("gaussian_mlp", (2,), 2, hidden=(16, 16)).build().double()
    params = {k: p.detach() for k, p in model.named_parameters()}
    algo = build("maml_rl", loss="return", steps=steps, lr=0.1)
    tasks = navigation2d(shots=5, query=4).sample(3, 0, 7, range(3), dtype=torch.float64)
    traj = algo.prepare(model, params, {}, tasks)
    a, b = meta_grad(algo, model, params, {}, traj), meta_grad_loop(algo, model, params, {}, traj)
    for k in params:
        assert torch.allclose(a.grads[k], b.grads[k], rtol=1e-8, atol=1e-10), k
    for k in a.metrics:
        assert torch.allclose(a.metrics[k], b.metrics[k], rtol=1e-8, atol=1e-10), k


def test_a_task_collects_the_same_trajectories_in_any_batch():
    """Action noise and resets come from each task's own seed: a task sampled alone, or among
    others, collects the same episodes at the same weights."""
    torch.manual_seed(0)
    model = ModelSpec("gaussian_mlp", (2,), 2, hidden=(16, 16)).build()
    params = {k: p.detach() for k, p in model.named_parameters()}
    algo = build("maml_rl", loss="return", steps=1, lr=0.1)
    family = navigation2d(shots=3, query=2)
    together = algo.prepare(model, params, {}, family.sample(0, 0, 5, [4, 9, 2]))
    alone = algo.prepare(model, params, {}, family.sample(0, 0, 5, [9]))
    for x, y in zip(together.slice(1, 2).tensors(), alone.tensors()):
        assert torch.allclose(x, y, atol=1e-6)
    other_step = algo.prepare(model, params, {}, family.sample(0, 0, 6, [9]))
    assert not torch.allclose(other_step.outer_rewards, alone.outer_rewards)
