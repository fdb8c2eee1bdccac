"""ProMP's meta-gradient against an explicit double-backward computation written out here, central
finite differences, and the per-task loop; its surrogates' values at the collection weights."""

from __future__ import annotations

import pytest
import torch

from distmeta.algorithms import build, meta_grad, meta_grad_loop
from distmeta.algorithms.rl.baseline import linear_baseline, returns_to_go
from distmeta.algorithms.rl.surrogate import log_probs
from distmeta.models import ModelSpec
from distmeta.models.policy import gaussian_kl
from distmeta.tasks.rl import navigation2d

CLIP, ETA, ALPHA = 0.3, 0.5, 0.1


def setup(steps: int, seed: int = 0):
    """A small float64 policy, ProMP's trajectories of 3 navigation tasks collected at theta_o, and
    theta: theta_o moved a little (as after an outer epoch), so every likelihood ratio is in play."""
    torch.manual_seed(seed)
    model = ModelSpec("gaussian_mlp", (2,), 2, hidden=(8, 8)).build().double()
    origin = {k: p.detach() for k, p in model.named_parameters()}
    algo = build("promp_rl", loss="return", steps=steps, lr=ALPHA, clip=CLIP, kl_penalty=ETA)
    tasks = navigation2d(shots=4, query=3).sample(3, 0, 7, range(3), dtype=torch.float64)
    traj = algo.prepare(model, origin, {}, tasks)
    gen = torch.Generator().manual_seed(1)
    theta = {k: v + 0.02 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in origin.items()}
    return model, algo, traj, theta


def normalized(a: torch.Tensor) -> torch.Tensor:
    return (a - a.mean()) / a.std()


def explicit_objective(model, p: dict, task) -> torch.Tensor:
    """ProMP's J for one task (``task`` without the task dim), by plain autograd with ``create_graph``."""
    first_obs = task.inner_obs[0] if task.inner_obs.shape[0] else task.outer_obs
    q = p
    for j in range(task.inner_obs.shape[0]):
        o, a, r = task.inner_obs[j], task.inner_actions[j], task.inner_rewards[j]
        adv = normalized(returns_to_go(r, 0.99) - linear_baseline(o, r, 0.99))
        lvc = (torch.exp(log_probs(model, q, {}, o, a) - task.inner_logp[j]) * adv).mean()
        g = torch.autograd.grad(lvc, list(q.values()), create_graph=True)
        q = {k: v + ALPHA * d for (k, v), d in zip(q.items(), g)}
    o, a, r = task.outer_obs, task.outer_actions, task.outer_rewards
    adv = normalized(returns_to_go(r, 0.99) - linear_baseline(o, r, 0.99))
    ratio = torch.exp(log_probs(model, q, {}, o, a) - task.outer_logp)
    clipped = torch.min(ratio * adv, torch.clamp(ratio, 1 - CLIP, 1 + CLIP) * adv).mean()
    mean = torch.func.functional_call(model, p, (first_obs,))
    kl = gaussian_kl(task.pre_mean, task.pre_log_std, mean, p["log_std"]).mean()
    return clipped - ETA * kl


@pytest.mark.parametrize("steps", [1, 2])
def test_meta_gradient_equals_explicit_double_backward_and_the_loop(steps):
    model, algo, traj, theta = setup(steps)
    batched, loop = meta_grad(algo, model, theta, {}, traj), meta_grad_loop(algo, model, theta, {}, traj)
    p = {k: v.clone().requires_grad_() for k, v in theta.items()}
    total = sum(explicit_objective(model, p, traj.unbatched(i)) for i in range(len(traj)))
    truth = dict(zip(p, torch.autograd.grad(total, list(p.values()))))
    for k in theta:  # the meta-gradient is of the loss, minus J
        assert torch.allclose(-batched.grads[k], truth[k], rtol=1e-8, atol=1e-10), k
        assert torch.allclose(loop.grads[k], batched.grads[k], rtol=1e-8, atol=1e-10), k
    assert (batched.metrics["outer_kl"] > 0).all()


def test_meta_gradient_matches_central_finite_differences():
    model, algo, traj, theta = setup(1)
    got = meta_grad(algo, model, theta, {}, traj).grads

    def loss(p: dict) -> float:
        return sum(algo.task_objective(model, p, {}, traj.unbatched(i))[0] for i in range(len(traj))).item()

    gen, h = torch.Generator().manual_seed(2), 1e-6
    for _ in range(6):  # directional derivatives along random directions
        d = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in theta.items()}
        fd = (loss({k: v + h * d[k] for k, v in theta.items()}) - loss({k: v - h * d[k] for k, v in theta.items()})) / (2 * h)
        analytic = sum((got[k] * d[k]).sum() for k in theta).item()
        assert abs(fd - analytic) <= 1e-4 * max(1.0, abs(analytic)), (fd, analytic)


def test_at_the_collection_weights_the_surrogates_start_from_the_policy_gradient():
    """At theta_o: every ratio is 1, nothing is clipped, the KL and its gradient are 0, and the
    LVC inner step is the plain policy-gradient step on normalised advantages."""
    model, algo, traj, _ = setup(1)
    origin = {k: p.detach() for k, p in model.named_parameters()}
    out = meta_grad(algo, model, origin, {}, traj)
    assert (out.metrics["clip_fraction"] == 0).all() and (out.metrics["outer_kl"].abs() < 1e-12).all()
    task = traj.unbatched(0)
    o, a, r = task.inner_obs[0], task.inner_actions[0], task.inner_rewards[0]
    p = {k: v.clone().requires_grad_() for k, v in origin.items()}
    plain = (log_probs(model, p, {}, o, a) * normalized(returns_to_go(r, 0.99) - linear_baseline(o, r, 0.99))).mean()
    expected = {k: v + ALPHA * d for (k, v), d in zip(origin.items(), torch.autograd.grad(plain, list(p.values())))}
    got = algo.inner_step(model, origin, {}, o, a, r, True, old_logp=task.inner_logp[0])
    for k in origin:
        assert torch.allclose(got[k], expected[k], rtol=1e-10, atol=1e-12), k


def test_a_ratio_beyond_the_clip_stops_its_gradient():
    """The check can fail: far from theta_o most ratios leave [1 - eps, 1 + eps] and the clipped
    surrogate's gradient is no longer the ratio-weighted one."""
    model, algo, traj, theta = setup(0)
    far = {k: v * 1.5 for k, v in theta.items()}
    out = meta_grad(algo, model, far, {}, traj)
    assert (out.metrics["clip_fraction"] > 0.2).all()
    unclipped = build("promp_rl", loss="return", steps=0, lr=ALPHA, clip=1e6, kl_penalty=ETA)
    other = meta_grad(unclipped, model, far, {}, traj)
    assert not torch.allclose(out.grads["head.weight"], other.grads["head.weight"], rtol=1e-3)
