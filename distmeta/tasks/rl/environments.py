"""Task families whose tasks are environments (meta-RL): the task data is each task's
specification and seed, and the environments are built where the task is computed.

A task of step ``s`` is a pure function of ``(seed, stream, s, index)``: its parameters (a goal,
a direction, a target velocity) and the seed from which its environments' resets and the
policy's action noise are drawn, so a recomputed task collects the same trajectories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from distmeta.tasks.seeding import task_generator, task_seed
from distmeta.tasks.stacked import Stacked


class VectorEnv(Protocol):
    """``T`` tasks x ``N`` environments each, stepped at once."""

    def reset(self) -> torch.Tensor:
        """Observations ``[T, N, obs]``."""
        ...

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``actions [T, N, act]`` -> ``(observations [T, N, obs], rewards [T, N])``."""
        ...


@dataclass(frozen=True)
class EnvTasks(Stacked):
    """``params [T, P]``: each task's MDP parameters; ``seeds [T]``: each task's seed (int64);
    ``sizes [T, 2]``: environments per adaptation step and per post-adaptation collection.

    Subclasses name the environment: its dimensions, horizon and :meth:`environments`."""

    params: torch.Tensor
    seeds: torch.Tensor
    sizes: torch.Tensor

    observations: ClassVar[int] = 0
    actions: ClassVar[int] = 0
    horizon: ClassVar[int] = 0
    positions: ClassVar[bool] = False
    """Its observations start with the agent's position in the plane (its paths can be drawn)."""

    def environments(self, n: int, phase: int) -> VectorEnv:
        """``n`` environments per task for collection ``phase`` (0, 1, ...: the adaptation steps,
        then the post-adaptation collection), their resets seeded by the task seed and phase."""
        raise NotImplementedError

    def count(self, post: bool) -> int:
        """Environments per task in a collection: after adaptation (``post``) or for an adaptation step."""
        return int(self.sizes[0, 1 if post else 0])

    def noise(self, n: int, phase: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[T, n, horizon, actions]`` standard normals, the policy's action noise in collection
        ``phase``: each task's from its own seed, so which tasks share a batch does not matter."""
        g = torch.Generator()
        rows = [
            torch.randn(n, self.horizon, self.actions, generator=phase_generator(int(s), phase, g)) for s in self.seeds.tolist()
        ]
        return torch.stack(rows).to(device)


def phase_generator(seed: int, phase: int, generator: torch.Generator | None = None) -> torch.Generator:
    """A generator for one collection of one task (``seed``: the task's own)."""
    return task_generator(seed, phase, 0, 0, generator)


@dataclass(frozen=True)
class EnvFamily:
    """A distribution of MDPs: task parameter ``j`` is uniform in ``ranges[j]``; ``tasks`` is the
    :class:`EnvTasks` subclass that builds the environments (and reads the parameters). ``shots``: environments per
    adaptation step (trajectories the inner policy-gradient step uses); ``query``: environments
    collected with the adapted policy (the outer objective's trajectories)."""

    name: str
    tasks: type[EnvTasks]
    ranges: tuple[tuple[float, float], ...]
    shots: int = 20
    query: int = 20

    loss = "return"
    """Trained by policy gradients; scored by the average undiscounted return (higher is better)."""

    def env_steps(self, inner_steps: int) -> int:
        """The environment steps one training task takes: ``shots`` episodes for each of
        ``inner_steps`` adaptation steps, then ``query`` after adaptation, each of the horizon."""
        return (inner_steps * self.shots + self.query) * self.tasks.horizon

    def with_data(self, data: None) -> EnvFamily:
        """Environment tasks are computed, not loaded: there is no data to attach."""
        return self

    def check(self, *, shots: int | None = None, query: int | None = None, what: str = "") -> None:
        for name, n in (("shots", shots), ("query", query)):
            if n is not None and n < 1:
                raise ValueError(
                    f"{self.name}{' ' + what if what else ''}: {name} (environments per collection) must be >= 1, got {n}"
                )

    def evaluation_defaults(self) -> tuple[tuple[int, ...], int]:
        """The training number of environments per adaptation step (the MAML paper evaluates
        with the training batch), as many after adaptation."""
        return (self.shots,), self.query

    def sample(self, seed: int, stream: int, step: int, indices: Sequence[int], *, shots: int | None = None,
               query: int | None = None, dtype: torch.dtype = torch.float32) -> EnvTasks:  # fmt: skip
        """Tasks ``indices`` of ``step``: each task's parameters from uniforms drawn by a generator
        seeded by its key, and its own seed for resets and action noise."""
        k = self.shots if shots is None else shots
        q = self.query if query is None else query
        g = torch.Generator()
        u = torch.empty(len(indices), len(self.ranges), dtype=torch.float64)
        for row, index in enumerate(indices):
            torch.rand(
                len(self.ranges), generator=task_generator(seed, stream, step, int(index), g), dtype=torch.float64, out=u[row]
            )
        low, high = (torch.tensor(b, dtype=torch.float64) for b in zip(*self.ranges))
        seeds = torch.tensor([task_seed(seed, stream, step, int(i)) for i in indices], dtype=torch.int64)
        sizes = torch.tensor([[k, q]] * len(indices), dtype=torch.int64).reshape(len(indices), 2)
        return self.tasks((low + (high - low) * u).to(dtype), seeds, sizes)
