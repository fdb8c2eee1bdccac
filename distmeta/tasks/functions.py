"""1-D regression families: y = f_theta(x), with theta drawn per task from uniform ranges.

``sine`` is the benchmark of Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of
Deep Networks" (ICML 2017), section 5.1: y = A sin(x - phase), A ~ U[0.1, 5], phase ~ U[0, pi],
x ~ U[-5, 5]. ``linear``, ``quadratic`` and ``harmonic`` (a sum of two sines) share its input
range and sampling, so one MLP can meta-learn them jointly. ``parabola`` (s alpha (x - c)^2 + b,
s = +-1), ``tanh`` (a tanh(x - c) + b) and ``l1`` (a |x - c| + b) are the further modes of Vuorio et
al., "Multimodal Model-Agnostic Meta-Learning via Task-Aware Modulation" (NeurIPS 2019), whose
benchmark also adds Gaussian noise to the targets (``noise``, its standard deviation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.seeding import task_generator

Range = tuple[float, float]


@dataclass(frozen=True)
class FunctionKind:
    """Parameter names with default ranges, and ``f(params [T, P], x [T, N]) -> y [T, N]``."""

    params: tuple[tuple[str, Range], ...]
    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _p(params: torch.Tensor, i: int) -> torch.Tensor:
    return params[:, i : i + 1]


KINDS: dict[str, FunctionKind] = {
    "sine": FunctionKind((("amplitude", (0.1, 5.0)), ("phase", (0.0, math.pi))), lambda p, x: _p(p, 0) * torch.sin(x - _p(p, 1))),
    "linear": FunctionKind((("slope", (-3.0, 3.0)), ("intercept", (-3.0, 3.0))), lambda p, x: _p(p, 0) * x + _p(p, 1)),
    "quadratic": FunctionKind(
        (("a", (-0.5, 0.5)), ("b", (-2.0, 2.0)), ("c", (-3.0, 3.0))), lambda p, x: _p(p, 0) * x**2 + _p(p, 1) * x + _p(p, 2)
    ),
    "harmonic": FunctionKind(
        (
            ("amplitude1", (0.1, 2.5)),
            ("frequency1", (0.5, 2.0)),
            ("phase1", (0.0, 2 * math.pi)),
            ("amplitude2", (0.1, 2.5)),
            ("frequency2", (0.5, 2.0)),
            ("phase2", (0.0, 2 * math.pi)),
        ),
        lambda p, x: _p(p, 0) * torch.sin(_p(p, 1) * x + _p(p, 2)) + _p(p, 3) * torch.sin(_p(p, 4) * x + _p(p, 5)),
    ),
    # the sign is drawn uniform in its range and only its sign kept: +-1 with equal odds for [-1, 1]
    "parabola": FunctionKind(
        (("sign", (-1.0, 1.0)), ("alpha", (0.02, 0.15)), ("center", (-3.0, 3.0)), ("offset", (-3.0, 3.0))),
        lambda p, x: torch.sign(_p(p, 0)) * _p(p, 1) * (x - _p(p, 2)) ** 2 + _p(p, 3),
    ),
    "tanh": FunctionKind(
        (("scale", (-3.0, 3.0)), ("center", (-3.0, 3.0)), ("offset", (-3.0, 3.0))),
        lambda p, x: _p(p, 0) * torch.tanh(x - _p(p, 1)) + _p(p, 2),
    ),
    "l1": FunctionKind(
        (("scale", (-3.0, 3.0)), ("center", (-3.0, 3.0)), ("offset", (-3.0, 3.0))),
        lambda p, x: _p(p, 0) * torch.abs(x - _p(p, 1)) + _p(p, 2),
    ),
}


@dataclass(frozen=True)
class FunctionFamily:
    """Samples tasks of ``kind`` deterministically from ``(seed, stream, step, index)``.

    ``ranges`` overrides the kind's default parameter ranges by name; ``name`` (default: the
    kind) labels the family in metrics, so a mixture can hold two differently ranged sines.
    """

    kind: str = "sine"
    shots: int = 10
    query: int = 10
    ranges: tuple[tuple[str, Range], ...] = ()
    x_range: Range = (-5.0, 5.0)
    name: str = ""
    noise: float = 0.0
    """Standard deviation of Gaussian noise added to every target, support and query alike."""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown function family '{self.kind}'; known: {', '.join(KINDS)}")
        known = [n for n, _ in KINDS[self.kind].params]
        for key, (low, high) in self.ranges:
            if key not in known:
                raise ValueError(f"{self.kind} has no parameter '{key}'; its parameters: {', '.join(known)}")
            if not low <= high:
                raise ValueError(f"{self.kind} range of '{key}' must be [low, high] with low <= high, got [{low}, {high}]")
        if not self.noise >= 0:
            raise ValueError(f"{self.kind}: target noise is a standard deviation, 0 or more; got {self.noise}")
        if not self.name:
            object.__setattr__(self, "name", self.kind)

    loss = "mse"
    """Regression: trained on the mean squared error, which is also the score."""

    def with_data(self, data: None) -> FunctionFamily:
        """Function tasks are computed, not loaded: there is no data to attach."""
        return self

    def check(self, *, shots: int | None = None, query: int | None = None, what: str = "") -> None:
        """Any number of points can be drawn."""

    def evaluation_defaults(self) -> tuple[tuple[int, ...], int]:
        """K = 5, 10 and 20 support points, 100 query points (the MAML paper's figure)."""
        return (5, 10, 20), 100

    def param_ranges(self) -> list[Range]:
        given = dict(self.ranges)
        return [tuple(given.get(n, default)) for n, default in KINDS[self.kind].params]

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

        Each task draws its own uniforms (parameters first, then the K + Q inputs, then with
        ``noise`` its K + Q normal draws) from a generator seeded by its key, so the same task comes
        out whichever subset of ``indices`` it is sampled with.
        """
        k = self.shots if shots is None else shots
        q = self.query if query is None else query
        ranges = self.param_ranges()
        n = len(ranges)
        g = torch.Generator()
        u = torch.empty(len(indices), n + k + q, dtype=torch.float64)
        eps = torch.zeros(len(indices), k + q, dtype=torch.float64)
        for row, index in enumerate(indices):
            task_generator(seed, stream, step, int(index), g)
            torch.rand(n + k + q, generator=g, dtype=torch.float64, out=u[row])
            if self.noise:
                torch.randn(k + q, generator=g, dtype=torch.float64, out=eps[row])
        params = torch.stack([_scale(u[:, i], r) for i, r in enumerate(ranges)], 1)
        x = _scale(u[:, n:], self.x_range)
        y = KINDS[self.kind].f(params, x) + self.noise * eps
        x, y = x.to(dtype).unsqueeze(-1), y.to(dtype).unsqueeze(-1)
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])


def SineFamily(
    shots: int = 10,
    query: int = 10,
    amplitude: Range = (0.1, 5.0),
    phase: Range = (0.0, math.pi),
    x_range: Range = (-5.0, 5.0),
) -> FunctionFamily:
    """The MAML paper's sine family (the single-family default)."""
    return FunctionFamily("sine", shots, query, (("amplitude", tuple(amplitude)), ("phase", tuple(phase))), tuple(x_range))


def _scale(u: torch.Tensor, bounds: Range) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * u
