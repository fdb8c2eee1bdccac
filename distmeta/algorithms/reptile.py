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

from distmeta.algorithms.base import Metrics
from distmeta.algorithms.gradient import GradientAdaptation, untracked


@dataclass(frozen=True)
class Reptile(GradientAdaptation):
    name = "reptile"
    inner_batch: int = 0
    use_query: bool = True

    def minibatches(self, n: int) -> list[torch.Tensor | None]:
        """Row indices of each inner step's minibatch (None: all rows)."""
        if self.inner_batch <= 0 or self.inner_batch >= n:
            return [None] * self.inner.steps
        order = list(range(n))
        random.Random(0).shuffle(order)  # rows come grouped by class; Python's RNG, as torch's cannot run under vmap
        order = torch.tensor(order)
        return [order[(j * self.inner_batch + torch.arange(self.inner_batch)) % n] for j in range(self.inner.steps)]

    def task_objective(self, model, params, buffers, sx, sy, qx, qy) -> tuple[torch.Tensor, Metrics]:
        x, y = (torch.cat([sx, qx]), torch.cat([sy, qy])) if self.use_query else (sx, sy)
        pre = {}
        if self.diagnostics:
            with untracked():
                _, pre = self.query_metrics(self.predict(model, params, {}, buffers, qx).detach(), qy, "preadapt")
        fast = params
        for rows in self.minibatches(len(x)):
            xb, yb = (x, y) if rows is None else (x[rows], y[rows])
            fast = self.inner_step(model, fast, {}, buffers, xb, yb, first_order=True)
        phi = {k: v.detach() for k, v in fast.items()}
        surrogate = sum(0.5 * ((params[k] - phi[k]) ** 2).sum() for k in params)
        _, post = self.query_metrics(self.predict(model, phi, {}, buffers, qx), qy)
        return surrogate, {"loss": post["query_loss"], **post, **pre}

    @property
    def explicit_grad(self) -> bool:
        return False
