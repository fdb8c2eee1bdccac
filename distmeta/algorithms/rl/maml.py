"""MAML for reinforcement learning (Finn et al., ICML 2017, section 5.3) with a DiCE inner
policy-gradient step, so the second-order term is estimated without bias.

A shard first collects, for all its tasks at once (:meth:`PolicyMAML.prepare`): trajectories at
the meta-parameters, the inner step on them, trajectories at the adapted weights (again for each
further inner step), and the post-adaptation trajectories. The meta-gradient is then a pure
function of (policy parameters, trajectories), per task, batched (``vmap``) or in a loop, like
every other algorithm: the inner steps recomputed on the same trajectories, differentiated
through (second order) or not (``first_order``), and the outer DiCE objective on the
post-adaptation trajectories. ``first_order`` gives the first-order MAML gradient, the
post-adaptation policy gradient applied to the meta-parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.func import grad, vmap

from distmeta.algorithms.base import Algorithm, Metrics, Mode, Options, Params, forward
from distmeta.algorithms.gradient import InnerLoop
from distmeta.algorithms.rl.baseline import linear_baseline, returns_to_go
from distmeta.algorithms.rl.rollouts import Rollout, Trajectories, collect, per_task
from distmeta.algorithms.rl.surrogate import dice_objective
from distmeta.models.policy import LOG_STD, gaussian_entropy, gaussian_kl
from distmeta.tasks.rl import EnvTasks


@dataclass(frozen=True)
class PolicyMAML(Algorithm):
    """``inner``: the policy-gradient adaptation (steps, LR, first order); ``discount``: gamma of
    the returns the surrogates and the baseline use; ``normalize``: the inner step's surrogate
    divided by its advantages' spread (:mod:`distmeta.algorithms.rl.surrogate`)."""

    name: ClassVar[str] = "maml_rl"
    collects: ClassVar[bool] = True
    loss: str = "return"
    inner: InnerLoop = InnerLoop(steps=1, lr=0.1)
    discount: float = 0.99
    normalize: bool = True

    @classmethod
    def from_options(cls, options: Options) -> PolicyMAML:
        inner = InnerLoop(options.steps, options.lr, first_order=options.first_order)
        extra = options.extra
        return cls(loss=options.loss, inner=inner, discount=float(extra.get("discount", 0.99)),
                   normalize=bool(extra.get("normalize_advantages", True)))  # fmt: skip

    # -- the inner step -----------------------------------------------------------------------------
    def inner_step(self, model: nn.Module, p: Params, buffers: Params, obs, actions, rewards, first_order: bool,
                   mode: Mode = Mode()) -> Params:  # fmt: skip
        """One policy-gradient ascent step on one task's collection."""

        def loss(q: Params) -> torch.Tensor:
            return -dice_objective(model, q, buffers, obs, actions, rewards, self.discount, self.normalize)

        if mode.autograd:
            got = torch.autograd.grad(loss(p), list(p.values()), create_graph=not first_order, allow_unused=True)
            g = {k: torch.zeros_like(w) if d is None else d for (k, w), d in zip(p.items(), got)}
        else:
            g = grad(loss)(p)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
        return {k: w - self.inner.lr * g[k] for k, w in p.items()}

    def _adapt_all(self, model: nn.Module, p: Params, buffers: Params, r: Rollout) -> Params:
        """Every task's inner step at once (collection only: first order, detached)."""
        step = vmap(lambda q, o, a, w: self.inner_step(model, q, buffers, o, a, w, first_order=True))
        return {k: v.detach() for k, v in step(p, r.obs, r.actions, r.rewards).items()}

    # -- collection, where the environments live ----------------------------------------------------
    def prepare(self, model: nn.Module, params: Params, buffers: Params, tasks: EnvTasks) -> Trajectories:
        """The trajectories of ``tasks`` at ``params``: each inner step's collection, then the
        post-adaptation one (``tasks.count(post=True)`` environments)."""
        p = per_task({k: v.detach() for k, v in params.items()}, len(tasks))
        inner = []
        for phase in range(self.inner.steps):
            inner.append(collect(model, p, buffers, tasks, tasks.count(post=False), phase))
            p = self._adapt_all(model, p, buffers, inner[-1])
        outer = collect(model, p, buffers, tasks, tasks.count(post=True), self.inner.steps)
        return Trajectories.of(inner, outer)

    def adaptation_scores(self, model: nn.Module, params: Params, buffers: Params, tasks: EnvTasks,
                          steps: Sequence[int]) -> torch.Tensor:  # fmt: skip
        """``[T, len(steps)]``: each task's average undiscounted return after each of ``steps``
        adaptation steps, every step collecting fresh trajectories (``tasks.count(post=False)``
        environments) at the weights it reached."""
        p = per_task({k: v.detach() for k, v in params.items()}, len(tasks))
        at: dict[int, torch.Tensor] = {}
        for j in range(max(steps) + 1):
            rollout = collect(model, p, buffers, tasks, tasks.count(post=False), j)
            at[j] = rollout.returns()
            if j < max(steps):
                p = self._adapt_all(model, p, buffers, rollout)
        return torch.stack([at[j] for j in steps], 1)

    # -- the meta-objective, a pure function of (parameters, trajectories) ------------------------
    def task_objective(self, model: nn.Module, params: Params, buffers: Params, task: Trajectories,
                       mode: Mode = Mode()) -> tuple[torch.Tensor, Metrics]:  # fmt: skip
        """Minus the outer DiCE objective after the inner steps; metrics: the returns before and
        after adaptation, the adapted policy's entropy, KL(adapted || meta-policy) on the
        post-adaptation states, and the baseline's unexplained share of the return variance."""
        p = params
        for j in range(self.inner.steps):
            obs, actions, rewards = task.inner_obs[j], task.inner_actions[j], task.inner_rewards[j]
            p = self.inner_step(model, p, buffers, obs, actions, rewards, self.inner.first_order, mode)
        objective = dice_objective(model, p, buffers, task.outer_obs, task.outer_actions, task.outer_rewards, self.discount)
        return -objective, {
            "loss": -objective.detach(),
            "preadapt_return": task.inner_rewards[0].sum(-1).mean().detach(),
            "adapted_return": task.outer_rewards.sum(-1).mean().detach(),
            **self._diagnostics(model, params, p, buffers, task),
        }

    def _diagnostics(self, model, params: Params, adapted: Params, buffers: Params, task: Trajectories) -> Metrics:
        obs = task.outer_obs
        with torch.no_grad():
            kl = gaussian_kl(
                forward(model, adapted, buffers, obs).detach(), adapted[LOG_STD].detach(),
                forward(model, params, buffers, obs).detach(), params[LOG_STD].detach(),
            ).mean()  # fmt: skip
            g = returns_to_go(task.inner_rewards[0], self.discount)
            b = linear_baseline(task.inner_obs[0], task.inner_rewards[0], self.discount)
            unexplained = ((g - b) ** 2).mean() / g.var().clamp_min(1e-12)
        return {"entropy": gaussian_entropy(adapted[LOG_STD]).detach(), "kl": kl, "baseline_error": unexplained}

    def scores(self, model, params, buffers, task, steps):
        raise TypeError("meta-RL tasks are scored by adaptation_scores (rollouts over a batch of tasks)")
