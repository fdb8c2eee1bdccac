"""``quadratic_bandit``: one-step episodes with reward -(a - g)^2 for a goal g per task.

For a Gaussian policy N(mu, sigma^2) the expected return is -((mu - g)^2 + sigma^2) in closed
form, and so is its MAML meta-gradient: the check that a policy-gradient meta-gradient
estimator, second order included, is unbiased (``tests/algorithms/test_rl_gradients.py``).
The observation is a constant 1, so the policy's mean is a function of its weights alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from distmeta.tasks.rl.environments import EnvFamily, EnvTasks


class Bandit:
    def __init__(self, goals: torch.Tensor, n: int):
        self.goals = goals.expand(goals.shape[0], n)  # [T, N]

    def reset(self) -> torch.Tensor:
        return torch.ones(*self.goals.shape, 1, dtype=self.goals.dtype, device=self.goals.device)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.reset(), -((actions[..., 0] - self.goals) ** 2)


@dataclass(frozen=True)
class BanditTasks(EnvTasks):
    """``params``: the goals ``[T, 1]``."""

    observations: ClassVar[int] = 1
    actions: ClassVar[int] = 1
    horizon: ClassVar[int] = 1

    def environments(self, n: int, phase: int) -> Bandit:
        return Bandit(self.params, n)


def quadratic_bandit(goal: tuple[float, float] = (-1.0, 1.0), shots: int = 100, query: int = 100) -> EnvFamily:
    """Goals uniform in ``goal`` (a single goal when both ends agree)."""
    return EnvFamily("quadratic_bandit", BanditTasks, (goal,), shots, query)
