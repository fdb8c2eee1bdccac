"""Sine-wave regression, the benchmark of Finn et al., "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks" (ICML 2017), section 5.1.

A task is y = A * sin(x - phase) with A ~ U[0.1, 5], phase ~ U[0, pi], and x ~ U[-5, 5] for both
the K support points and the query points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.seeding import task_generator


@dataclass(frozen=True)
class SineFamily:
    """Samples sine tasks deterministically from ``(seed, stream, step, index)``."""

    shots: int = 10
    query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    name: str = "sine"

    def with_data(self, data: None) -> "SineFamily":
        """Sine tasks are computed, not loaded: there is no data to attach."""
        return self

    def sample(
        self,
        seed: int,
        stream: int,
        step: int,
        indices: Sequence[int],
        *,
        shots: int | None = None,
        query: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> TaskBatch:
        """Tasks ``indices`` of meta-step ``step``, stacked: support [T, K, 1], query [T, Q, 1].

        Each task draws its own uniforms from a generator seeded by its key, so the same task
        comes out whichever subset of ``indices`` it is sampled with.
        """
        k = self.shots if shots is None else shots
        q = self.query if query is None else query
        g = torch.Generator()
        u = torch.empty(len(indices), 2 + k + q, dtype=torch.float64)
        for row, index in enumerate(indices):
            task_generator(seed, stream, step, int(index), g)
            torch.rand(2 + k + q, generator=g, dtype=torch.float64, out=u[row])
        amp = _scale(u[:, 0:1], self.amplitude)
        phase = _scale(u[:, 1:2], self.phase)
        x = _scale(u[:, 2:], self.x_range)
        y = amp * torch.sin(x - phase)
        x, y = x.to(dtype).unsqueeze(-1), y.to(dtype).unsqueeze(-1)
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])


def _scale(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * u
