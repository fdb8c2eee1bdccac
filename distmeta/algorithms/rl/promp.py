"""ProMP (Rothfuss et al., "ProMP: Proximal Meta-Policy Search", ICLR 2019), the outer objective
RLlib's MAML adapted: a proximal outer step taken several times over one meta-iteration's
samples.

A meta-iteration collects once, at the meta-parameters theta_o (:meth:`PolicyProMP.prepare`),
exactly as :class:`~distmeta.algorithms.rl.maml.PolicyMAML` does, and keeps with the trajectories
the log-probabilities of their actions under the policies that took them and the pre-update
policy's action means. Then the learner takes ``epochs`` Adam steps, each on the meta-gradient at
its current theta of

    J(theta) = mean_tasks J_clip(theta'(theta)) - eta KL(pi_theta_o || pi_theta),

a pure function of (theta, trajectories): the inner steps recomputed with the low-variance
curvature surrogate (:func:`~distmeta.algorithms.rl.surrogate.lvc_objective`, likelihood ratios
against the collecting policies, so it stays right as theta moves away from theta_o), PPO's
clipped surrogate of the adapted policy on the post-adaptation samples, and a KL penalty between
the pre-update policies on the pre-update samples. The trajectories stay on the shard that
collected them between epochs (:class:`~distmeta.shard.worker.ShardWorker`); a shard that lost
them collects them again at theta_o, the same trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from distmeta.algorithms.base import Metrics, Options, Params, forward
from distmeta.algorithms.rl.maml import PolicyMAML
from distmeta.algorithms.rl.rollouts import Trajectories, task_slice
from distmeta.algorithms.rl.surrogate import advantages, clipped_objective, likelihood_ratio, log_probs, lvc_objective
from distmeta.models.policy import LOG_STD, gaussian_kl
from distmeta.tasks.rl import EnvTasks


@dataclass(frozen=True)
class ProMPTrajectories(Trajectories):
    """:class:`Trajectories` and what the collecting policies said of them: ``inner_logp``
    ``[T, K, N, H]`` and ``outer_logp`` ``[T, M, H]``, the log-probabilities of the actions taken;
    ``pre_mean`` ``[T, N, H, A]`` and ``pre_log_std`` ``[T, A]``, the pre-update policy on the
    first collection's states (the KL penalty's reference)."""

    inner_logp: torch.Tensor
    outer_logp: torch.Tensor
    pre_mean: torch.Tensor
    pre_log_std: torch.Tensor


@dataclass(frozen=True)
class PolicyProMP(PolicyMAML):
    """``epochs``: Adam steps per meta-iteration on its samples; ``clip``: PPO's epsilon;
    ``kl_penalty``: eta, the weight of KL(pre-update policy at collection || now)."""

    name: ClassVar[str] = "promp_rl"
    proximal: ClassVar[bool] = True
    epochs: int = 5
    clip: float = 0.3
    kl_penalty: float = 0.0005

    @classmethod
    def from_options(cls, options: Options) -> PolicyProMP:
        base, extra = PolicyMAML.from_options(options), options.extra
        return cls(loss=base.loss, inner=base.inner, discount=base.discount, normalize=base.normalize,
                   epochs=int(extra.get("epochs", 5)), clip=float(extra.get("clip", 0.3)),
                   kl_penalty=float(extra.get("kl_penalty", 0.0005)))  # fmt: skip

    @property
    def outer_epochs(self) -> int:
        return self.epochs

    def surrogate(self, model: nn.Module, q: Params, buffers: Params, obs, actions, rewards, old_logp=None) -> torch.Tensor:
        """The LVC surrogate; with no ``old_logp`` (collecting, evaluating) the policy ``q`` itself took the actions."""
        if old_logp is None:
            old_logp = log_probs(model, q, buffers, obs, actions).detach()
        return lvc_objective(model, q, buffers, obs, actions, rewards, old_logp, self.discount, self.normalize)

    def collected_logp(self, task: Trajectories, j: int) -> torch.Tensor | None:
        return task.inner_logp[j]  # type: ignore[attr-defined]

    def prepare(self, model: nn.Module, params: Params, buffers: Params, tasks: EnvTasks) -> ProMPTrajectories:
        inner, outer, weights = self.collect_phases(model, params, buffers, tasks)
        base = Trajectories.of(inner, outer)
        rollouts = [*inner, outer]
        with torch.no_grad():
            logp = [
                torch.stack([log_probs(model, task_slice(w, i), buffers, r.obs[i], r.actions[i]) for i in range(len(tasks))])
                for w, r in zip(weights, rollouts)
            ]
            first = rollouts[0]
            pre = torch.stack([forward(model, task_slice(weights[0], i), buffers, first.obs[i]) for i in range(len(tasks))])
        inner_logp = torch.stack(logp[:-1], 1) if inner else logp[-1].unsqueeze(1)[:, :0]
        return ProMPTrajectories(*base.tensors(), inner_logp, logp[-1], pre, weights[0][LOG_STD].clone())

    def outer_objective(self, model: nn.Module, params: Params, adapted: Params, buffers: Params,
                        task: ProMPTrajectories) -> tuple[torch.Tensor, Metrics]:  # fmt: skip
        """J above; metrics: ``outer_kl`` (the penalised KL) and ``clip_fraction`` (the share of
        post-adaptation steps whose likelihood ratio the clip holds)."""
        obs, actions = task.outer_obs, task.outer_actions
        ratio = likelihood_ratio(model, adapted, buffers, obs, actions, task.outer_logp)
        advantage = advantages(obs, task.outer_rewards, self.discount, True)
        now = forward(model, params, buffers, self._first(task)[0])
        kl = gaussian_kl(task.pre_mean, task.pre_log_std, now, params[LOG_STD]).mean()
        objective = clipped_objective(ratio, advantage, self.clip) - self.kl_penalty * kl
        held = ((ratio.detach() - 1).abs() > self.clip).to(ratio.dtype).mean()
        return objective, {"outer_kl": kl.detach(), "clip_fraction": held}
