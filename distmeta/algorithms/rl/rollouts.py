"""Trajectories: what a policy collects in a shard's environments, and the task data the
meta-RL algorithms differentiate.

Collection steps all of a shard's tasks x environments together, and it is deterministic: the
action noise of task ``i`` in collection ``phase`` comes from the task's own seed, and the policy
runs one task at a time (each with its own adapted weights), so a recomputed task collects the
same trajectories at the same weights whatever else its shard computes, bit for bit: a forward
vmapped over tasks, or on a slice that starts elsewhere in memory, rounds differently (~1e-7 in
float32), and chaotic dynamics such as MuJoCo's grow that into other episodes within ~50 steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from distmeta.algorithms.base import Params
from distmeta.models.policy import LOG_STD
from distmeta.tasks.rl import EnvTasks
from distmeta.tasks.stacked import Stacked


@dataclass(frozen=True)
class Rollout:
    """One collection, ``[T, N, H, ...]``: observations before each action, the actions, the rewards."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor

    def returns(self) -> torch.Tensor:
        """``[T]``: each task's average undiscounted return over its environments."""
        return self.rewards.sum(-1).mean(-1)


@dataclass(frozen=True)
class Trajectories(Stacked):
    """A meta-RL task's data: ``inner_*`` ``[T, K, N, H, ...]``, the collections of its ``K``
    adaptation steps (the first at the meta-parameters); ``outer_*`` ``[T, M, H, ...]``, the
    collection with the adapted policy, which the outer objective scores."""

    inner_obs: torch.Tensor
    inner_actions: torch.Tensor
    inner_rewards: torch.Tensor
    outer_obs: torch.Tensor
    outer_actions: torch.Tensor
    outer_rewards: torch.Tensor

    @classmethod
    def of(cls, inner: list[Rollout], outer: Rollout) -> Trajectories:
        def stack(field: str) -> torch.Tensor:
            rows = [getattr(r, field) for r in inner]
            return torch.stack(rows, 1) if rows else getattr(outer, field).unsqueeze(1)[:, :0]  # K = 0: no inner loop

        return cls(stack("obs"), stack("actions"), stack("rewards"), outer.obs, outer.actions, outer.rewards)


def per_task(params: Params, tasks: int) -> Params:
    """``params`` with a leading task dim (views: the meta-parameters, shared by every task)."""
    return {k: v.expand(tasks, *v.shape) for k, v in params.items()}


def task_policy(model: nn.Module, params: Params, buffers: Params) -> nn.Module:
    """A copy of ``model`` holding one task's weights, to call directly while collecting (a
    ``functional_call`` re-binds the weights at every forward, which costs more than a small
    policy's forward). The copy's memory is its own, so it rounds as the task computed alone."""
    policy = copy.deepcopy(model)
    with torch.no_grad():
        for k, t in [*policy.named_parameters(), *policy.named_buffers()]:
            t.copy_(params[k] if k in params else buffers[k])
    return policy


def task_slice(params: Params, i: int) -> Params:
    """Task ``i``'s entries of ``params`` (``[T, ...]``), each copied into memory of its own: CPU
    matrix kernels round by their operands' alignment, and a slice of a stacked tensor is aligned
    by where it starts (a copy rounds as a task computed alone does)."""
    return {k: v[i].clone() for k, v in params.items()}


@torch.no_grad()
def collect(model: nn.Module, params: Params, buffers: Params, tasks: EnvTasks, n: int, phase: int) -> Rollout:
    """``n`` episodes per task with each task's policy (``params``: every entry ``[T, ...]``)."""
    envs = tasks.environments(n, phase)
    obs = envs.reset()
    noise = tasks.noise(n, phase, obs.device).to(obs.dtype)
    std = torch.exp(params[LOG_STD]).unsqueeze(1)  # [T, 1, A]
    policies = [task_policy(model, {k: v[i] for k, v in params.items()}, buffers) for i in range(len(tasks))]
    seen, acts, rewards = [], [], []
    for t in range(tasks.horizon):
        action = torch.stack([policy(obs[i].clone()) for i, policy in enumerate(policies)]) + std * noise[:, :, t]
        seen.append(obs)
        acts.append(action)
        obs, reward = envs.step(action)
        rewards.append(reward)
    return Rollout(torch.stack(seen, 2), torch.stack(acts, 2), torch.stack(rewards, 2))
