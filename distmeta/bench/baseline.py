"""The per-task loop the reference libraries train with (torch only, so it also runs where only
torch is installed: ``scripts/gpu_check.sh``)."""

from __future__ import annotations

import torch
from torch.func import functional_call

from distmeta.algorithms.base import LOSSES
from distmeta.algorithms.rl.rollouts import task_policy
from distmeta.algorithms.rl.surrogate import dice_objective
from distmeta.models.policy import LOG_STD
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


def protonet_loop_step(model: torch.nn.Module, opt: torch.optim.Optimizer, tasks: TaskBatch, ways: int) -> float:
    """Prototypical Networks the per-task way: embed, average each class's support, classify the
    queries by negative squared distance; returns the mean query loss."""
    opt.zero_grad(set_to_none=True)
    total = torch.zeros(())
    for i in range(len(tasks)):
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        support, query = model(sx), model(qx)
        protos = torch.stack([support[sy == n].mean(0) for n in range(ways)])
        total = total + torch.nn.functional.cross_entropy(-(torch.cdist(query, protos) ** 2), qy)
    meta_loss = total / len(tasks)
    meta_loss.backward()
    opt.step()
    return meta_loss.item()


def rl_loop_step(model: torch.nn.Module, opt: torch.optim.Optimizer, tasks, algo) -> float:
    """One meta-RL step the way learn2learn's meta-RL examples run (``maml_trpo.py``, with Adam for
    TRPO): one task after another, each collection a Python loop over time steps and environments
    (a policy forward per environment and step), the inner policy-gradient step by
    ``torch.autograd.grad(create_graph=True)``. The policy, the DiCE surrogates and every sample
    (resets, action noise) are distmeta's, so the gradient is the same; returns the mean outer loss."""
    inner = algo.inner
    names = [n for n, _ in model.named_parameters()]
    opt.zero_grad(set_to_none=True)
    total = torch.zeros(())
    for i in range(len(tasks)):
        task = tasks.slice(i, i + 1)
        fast = dict(zip(names, model.parameters()))
        for phase in range(inner.steps):
            episodes = _episodes(model, fast, task, task.count(post=False), phase)
            loss = -dice_objective(model, fast, {}, *episodes, algo.discount, algo.normalize)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not inner.first_order)
            fast = {k: w - inner.lr * g for (k, w), g in zip(fast.items(), grads)}
        episodes = _episodes(model, fast, task, task.count(post=True), inner.steps)
        total = total - dice_objective(model, fast, {}, *episodes, algo.discount)
    meta_loss = total / len(tasks)
    meta_loss.backward()
    opt.step()
    return meta_loss.item()


@torch.no_grad()
def _episodes(model: torch.nn.Module, params: dict, task, n: int, phase: int) -> tuple[torch.Tensor, ...]:
    """One task's ``n`` episodes of collection ``phase``: ``(obs, actions, rewards)`` ``[n, H, ...]``."""
    envs = task.environments(n, phase)
    obs, noise = envs.reset(), task.noise(n, phase)
    std = torch.exp(params[LOG_STD])
    policy = task_policy(model, params, {})  # a module holding the weights, as learn2learn's clone()
    seen, acts, rewards = [], [], []
    for t in range(task.horizon):
        action = torch.stack([policy(obs[0, e]) + std * noise[0, e, t] for e in range(n)])[None]
        seen.append(obs[0])
        acts.append(action[0])
        obs, reward = envs.step(action)
        rewards.append(reward[0])
    return torch.stack(seen, 1), torch.stack(acts, 1), torch.stack(rewards, 1)
