"""MAML for reinforcement learning (Finn et al., ICML 2017, section 5.3) with a DiCE inner
policy-gradient step, so the second-order term is estimated without bias.

A shard first collects, for all its tasks at once (:meth:`PolicyMAML.prepare`): trajectories at
the meta-parameters, the inner step on them, trajectories at the adapted weights (again for each
further inner step), and the post-adaptation trajectories. The meta-gradient is then a pure
function of (policy parameters, trajectories), per task, batched (``vmap``) or in a loop, like
every other algorithm: the inner steps recomputed on the same trajectories, differentiated
through (second order) or not (``first_order``), and the outer DiCE objective on the
post-adaptation trajectories. ``first_order`` gives the first-order MAML gradient, the
post-adaptation policy gradient applied to the meta-parameters. With no inner steps
(``pretrain_rl``) the objective is the plain policy gradient at the meta-parameters over every
task: the jointly pre-trained policy the MAML paper compares against, fine-tuned at evaluation
with the same inner step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.func import grad

from distmeta.algorithms.base import Algorithm, Metrics, Mode, Options, Params, forward
from distmeta.algorithms.gradient import InnerLoop
from distmeta.algorithms.rl.baseline import linear_baseline, returns_to_go
from distmeta.algorithms.rl.rollouts import Rollout, Trajectories, collect, per_task, task_slice
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
    def surrogate(self, model: nn.Module, q: Params, buffers: Params, obs, actions, rewards, old_logp=None) -> torch.Tensor:
        """The inner step's objective, to maximise: DiCE (``old_logp``, the collecting policy's
        log-probabilities, is for surrogates that weigh by likelihood ratios)."""
        return dice_objective(model, q, buffers, obs, actions, rewards, self.discount, self.normalize)

    def inner_step(self, model: nn.Module, p: Params, buffers: Params, obs, actions, rewards, first_order: bool,
                   mode: Mode = Mode(), old_logp=None) -> Params:  # fmt: skip
        """One policy-gradient ascent step on one task's collection."""

        def loss(q: Params) -> torch.Tensor:
            return -self.surrogate(model, q, buffers, obs, actions, rewards, old_logp)

        if mode.autograd:
            got = torch.autograd.grad(loss(p), list(p.values()), create_graph=not first_order, allow_unused=True)
            g = {k: torch.zeros_like(w) if d is None else d for (k, w), d in zip(p.items(), got)}
        else:
            g = grad(loss)(p)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
        return {k: w - self.inner.lr * g[k] for k, w in p.items()}

    def _adapt_all(self, model: nn.Module, p: Params, buffers: Params, r: Rollout) -> Params:
        """Every task's inner step (collection only: first order, detached), one task at a time
        so that a task's adapted weights do not depend on the tasks beside it (see
        :mod:`~distmeta.algorithms.rl.rollouts`)."""
        rows = [
            self.inner_step(model, task_slice(p, i), buffers, *(x[i].clone() for x in (r.obs, r.actions, r.rewards)), True)
            for i in range(r.obs.shape[0])
        ]
        return {k: torch.stack([row[k] for row in rows]).detach() for k in p}

    # -- collection, where the environments live ----------------------------------------------------
    def prepare(self, model: nn.Module, params: Params, buffers: Params, tasks: EnvTasks) -> Trajectories:
        """The trajectories of ``tasks`` at ``params``: each inner step's collection, then the
        post-adaptation one (``tasks.count(post=True)`` environments)."""
        inner, outer, _ = self.collect_phases(model, params, buffers, tasks)
        return Trajectories.of(inner, outer)

    def collect_phases(self, model: nn.Module, params: Params, buffers: Params,
                       tasks: EnvTasks) -> tuple[list[Rollout], Rollout, list[Params]]:  # fmt: skip
        """:meth:`prepare`'s collections, and the per-task weights (``[T, ...]``) each was collected with."""
        p = per_task({k: v.detach() for k, v in params.items()}, len(tasks))
        inner, weights = [], [p]
        for phase in range(self.inner.steps):
            inner.append(collect(model, p, buffers, tasks, tasks.count(post=False), phase))
            p = self._adapt_all(model, p, buffers, inner[-1])
            weights.append(p)
        outer = collect(model, p, buffers, tasks, tasks.count(post=True), self.inner.steps)
        return inner, outer, weights

    def adaptation_rollouts(self, model: nn.Module, params: Params, buffers: Params, tasks: EnvTasks,
                            steps: int) -> Iterator[Rollout]:  # fmt: skip
        """The collections of ``steps`` adaptation steps and the one after them (``steps + 1`` in
        all, ``tasks.count(post=False)`` environments each): each at the weights the steps before
        it reached, every step adapting on its own fresh collection (first order)."""
        p = per_task({k: v.detach() for k, v in params.items()}, len(tasks))
        for j in range(steps + 1):
            rollout = collect(model, p, buffers, tasks, tasks.count(post=False), j)
            yield rollout
            if j < steps:
                p = self._adapt_all(model, p, buffers, rollout)

    def adaptation_scores(self, model: nn.Module, params: Params, buffers: Params, tasks: EnvTasks,
                          steps: Sequence[int]) -> torch.Tensor:  # fmt: skip
        """``[T, len(steps)]``: each task's average undiscounted return after each of ``steps``
        adaptation steps (:meth:`adaptation_rollouts`)."""
        returns = [r.returns() for r in self.adaptation_rollouts(model, params, buffers, tasks, max(steps))]
        return torch.stack([returns[j] for j in steps], 1)

    # -- the meta-objective, a pure function of (parameters, trajectories) ------------------------
    def task_objective(self, model: nn.Module, params: Params, buffers: Params, task: Trajectories,
                       mode: Mode = Mode()) -> tuple[torch.Tensor, Metrics]:  # fmt: skip
        """Minus the outer objective after the inner steps; metrics: the returns before and
        after adaptation and their difference, the adapted policy's entropy, KL(adapted || meta-policy) on the
        post-adaptation states, and the baseline's unexplained share of the return variance."""
        p = self.adapt(model, params, buffers, task, mode)
        objective, own = self.outer_objective(model, params, p, buffers, task)
        before, after = self._first(task)[1].sum(-1).mean().detach(), task.outer_rewards.sum(-1).mean().detach()
        return -objective, {
            "loss": -objective.detach(),
            "preadapt_return": before,
            "adapted_return": after,
            "adaptation_gain": after - before,
            **own,
            **self._diagnostics(model, params, p, buffers, task),
        }

    def outer_objective(self, model: nn.Module, params: Params, adapted: Params, buffers: Params,
                        task: Trajectories) -> tuple[torch.Tensor, Metrics]:  # fmt: skip
        """The objective of the ``adapted`` policy on the post-adaptation trajectories, to
        maximise (DiCE), and metrics of its own (none)."""
        return dice_objective(model, adapted, buffers, task.outer_obs, task.outer_actions, task.outer_rewards, self.discount), {}

    def adapt(self, model: nn.Module, params: Params, buffers: Params, task: Trajectories, mode: Mode = Mode()) -> Params:
        """One task's adapted weights: the inner steps recomputed on its collections."""
        p = params
        for j in range(self.inner.steps):
            obs, actions, rewards = task.inner_obs[j], task.inner_actions[j], task.inner_rewards[j]
            p = self.inner_step(
                model, p, buffers, obs, actions, rewards, self.inner.first_order, mode, self.collected_logp(task, j)
            )
        return p

    def collected_logp(self, task: Trajectories, j: int) -> torch.Tensor | None:
        """The log-probabilities of inner collection ``j``'s actions under the policy that took
        them, for surrogates that need them (DiCE does not)."""
        return None

    def _diagnostics(self, model, params: Params, adapted: Params, buffers: Params, task: Trajectories) -> Metrics:
        obs = task.outer_obs
        with torch.no_grad():
            kl = gaussian_kl(
                forward(model, adapted, buffers, obs).detach(), adapted[LOG_STD].detach(),
                forward(model, params, buffers, obs).detach(), params[LOG_STD].detach(),
            ).mean()  # fmt: skip
            obs, rewards = self._first(task)
            g = returns_to_go(rewards, self.discount)
            b = linear_baseline(obs, rewards, self.discount)
            unexplained = ((g - b) ** 2).mean() / g.var().clamp_min(1e-12)
        return {"entropy": gaussian_entropy(adapted[LOG_STD]).detach(), "kl": kl, "baseline_error": unexplained}

    def _first(self, task: Trajectories) -> tuple[torch.Tensor, torch.Tensor]:
        """``(observations, rewards)`` of one task's collection at the meta-parameters: its first
        inner one, or with no inner loop (joint pre-training) the one the objective scores."""
        if self.inner.steps:
            return task.inner_obs[0], task.inner_rewards[0]
        return task.outer_obs, task.outer_rewards

    def scores(self, model, params, buffers, task, steps):
        raise TypeError("meta-RL tasks are scored by adaptation_scores (rollouts over a batch of tasks)")
