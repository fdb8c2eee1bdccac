"""Trajectories: what a policy collects in a shard's environments, and the task data the
meta-RL algorithms differentiate.

Collection is vectorised over tasks x environments (one policy forward per time step for all of
a shard's tasks, each task with its own adapted weights), and it is deterministic: the action
noise of task ``i`` in collection ``phase`` comes from the task's own seed, so a recomputed task
collects the same trajectories at the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import vmap

from distmeta.algorithms.base import Params, forward
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
            return torch.stack([getattr(r, field) for r in inner], 1)

        return cls(stack("obs"), stack("actions"), stack("rewards"), outer.obs, outer.actions, outer.rewards)


def per_task(params: Params, tasks: int) -> Params:
    """``params`` with a leading task dim (views: the meta-parameters, shared by every task)."""
    return {k: v.expand(tasks, *v.shape) for k, v in params.items()}


@torch.no_grad()
def collect(model: nn.Module, params: Params, buffers: Params, tasks: EnvTasks, n: int, phase: int) -> Rollout:
    """``n`` episodes per task with each task's policy (``params``: every entry ``[T, ...]``)."""
    envs = tasks.environments(n, phase)
    obs = envs.reset()
    noise = tasks.noise(n, phase, obs.device).to(obs.dtype)
    std = torch.exp(params[LOG_STD]).unsqueeze(1)  # [T, 1, A]
    means = vmap(lambda p, o: forward(model, p, buffers, o))
    seen, acts, rewards = [], [], []
    for t in range(tasks.horizon):
        action = means(params, obs) + std * noise[:, :, t]
        seen.append(obs)
        acts.append(action)
        obs, reward = envs.step(action)
        rewards.append(reward)
    return Rollout(torch.stack(seen, 2), torch.stack(acts, 2), torch.stack(rewards, 2))
