"""Reptile: Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", 2018.

Each task runs ``steps`` plain SGD steps from theta to the adapted weights phi; the task's
meta-gradient is theta - phi (the meta-optimizer steps theta towards phi). It is written as the
gradient of the surrogate 0.5 * ||theta - stop_grad(phi)||^2, so it batches like the others.

Reptile has no support/query distinction in training: with ``use_query`` (the default) the
inner loop trains on the whole episode (support and query sets), as in the paper's training;
``inner_batch`` > 0 makes each inner step use that many examples, cycling through a fixed
shuffle of the episode (0: every step sees all of them). Query metrics are measured on the
query set after adaptation (training data when ``use_query``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from distmeta.algorithms.base import Metrics, Mode, Options, as_objective
from distmeta.algorithms.gradient import GradientAdaptation, InnerLoop


@dataclass(frozen=True)
class Reptile(GradientAdaptation):
    name = "reptile"
    inner_batch: int = 0
    use_query: bool = True

    @classmethod
    def from_options(cls, options: Options) -> Reptile:
        """First order by definition; ``extra``: ``inner_batch``, ``use_query``."""
        inner = InnerLoop(steps=options.steps, lr=options.lr, first_order=True, clip=options.inner_grad_clip)
        extra = options.extra
        return cls(
            loss=options.loss, inner=inner, inner_batch=extra.get("inner_batch", 0), use_query=extra.get("use_query", True)
        )

    def minibatches(self, n: int) -> list[torch.Tensor | None]:
        """Row indices of each inner step's minibatch (None: all rows)."""
        if self.inner_batch <= 0 or self.inner_batch >= n:
            return [None] * self.inner.steps
        order = list(range(n))
        random.Random(0).shuffle(order)  # rows come grouped by class; Python's RNG, as torch's cannot run under vmap
        order = torch.tensor(order)
        return [order[(j * self.inner_batch + torch.arange(self.inner_batch)) % n] for j in range(self.inner.steps)]

    def task_objective(self, model, params, buffers, task, mode: Mode = Mode()) -> tuple[torch.Tensor, Metrics]:
        sx, sy, qx, qy = task.support_x, task.support_y, task.query_x, task.query_y
        x, y = (torch.cat([sx, qx]), torch.cat([sy, qy])) if self.use_query else (sx, sy)
        pre = {}
        if mode.diagnostics:
            with mode.untracked():
                _, pre = self.query_metrics(self.predict(model, params, {}, buffers, qx).detach(), qy, "preadapt")
        fast = params
        for rows in self.minibatches(len(x)):
            xb, yb = (x, y) if rows is None else (x[rows], y[rows])
            fast = self.inner_step(model, fast, {}, buffers, xb, yb, True, mode)
        phi = {k: v.detach() for k, v in fast.items()}
        surrogate = sum(0.5 * ((params[k] - phi[k]) ** 2).sum() for k in params)
        _, post = self.query_metrics(self.predict(model, phi, {}, buffers, qx), qy)
        return surrogate, {**as_objective(post), **pre}

    @property
    def explicit_grad(self) -> bool:
        return False
