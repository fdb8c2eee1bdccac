"""``navigation2d``: the point robot of Finn et al. (MAML, ICML 2017, section 5.3).

The agent starts at the origin and moves by its action, clipped to [-0.1, 0.1] per coordinate;
the reward of a step is minus the distance to the task's goal, drawn uniformly from
[-0.5, 0.5]^2; episodes last 100 steps. Vectorised over tasks x environments in torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from distmeta.tasks.rl.environments import EnvFamily, EnvTasks

GOAL_LOW, GOAL_HIGH, MAX_SPEED, HORIZON = -0.5, 0.5, 0.1, 100


class Navigation2D:
    """Point robots for ``goals [T, 2]``, ``n`` per task (the dynamics are deterministic)."""

    def __init__(self, goals: torch.Tensor, n: int):
        self.goals = goals.unsqueeze(1)  # [T, 1, 2]
        self.position = torch.zeros(goals.shape[0], n, 2, dtype=goals.dtype, device=goals.device)

    def reset(self) -> torch.Tensor:
        self.position = torch.zeros_like(self.position)
        return self.position

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.position = self.position + actions.clamp(-MAX_SPEED, MAX_SPEED)
        return self.position, -(self.position - self.goals).norm(dim=-1)


@dataclass(frozen=True)
class NavigationTasks(EnvTasks):
    """``params``: the goals ``[T, 2]``."""

    observations: ClassVar[int] = 2
    actions: ClassVar[int] = 2
    horizon: ClassVar[int] = HORIZON
    positions: ClassVar[bool] = True

    def environments(self, n: int, phase: int) -> Navigation2D:
        return Navigation2D(self.params, n)


def navigation2d(name: str = "navigation2d", shots: int = 20, query: int = 20) -> EnvFamily:
    """The family: goals uniform in [-0.5, 0.5]^2; 20 trajectories per collection, as the paper."""
    return EnvFamily(name, NavigationTasks, ((GOAL_LOW, GOAL_HIGH),) * 2, shots, query)
