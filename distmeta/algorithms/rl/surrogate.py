"""The policy-gradient objective as a DiCE surrogate (Foerster et al., "DiCE: The Infinitely
Differentiable Monte Carlo Estimator", ICML 2018).

For trajectories sampled from pi_theta, with S_t = sum_{t' <= t} log pi(a_t' | s_t'),

    L(theta) = mean_n sum_t [ box(S_t) gamma^t r_t + (1 - box(log pi(a_t | s_t))) gamma^t b_t ],
    box(x) = exp(x - stop_gradient(x)),

has the value of the average discounted return and, to every order, derivatives whose
expectations are the derivatives of the expected return: the second-order MAML term (the
Hessian's score-function part, which autograd through a plain log-likelihood surrogate misses)
comes out right. The baseline term has zero-mean derivatives of every order (b_t depends on the
visited state only), so it lowers variance without bias.

The surrogate is averaged over time steps (divided by H), and with ``normalize`` also divided by
the standard deviation of the advantages G_t - b_t (a constant of the data, not differentiated):
the scale MAML-RL's normalised advantages give its inner step, so its step sizes carry over.
Either is a positive factor on the estimate: a step size per task, no bias in its direction.
"""

from __future__ import annotations

import torch
from torch import nn

from distmeta.algorithms.base import Params, forward
from distmeta.algorithms.rl.baseline import discounts, linear_baseline, returns_to_go
from distmeta.models.policy import LOG_STD, gaussian_log_prob


def magic_box(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x - x.detach())


def log_probs(model: nn.Module, params: Params, buffers: Params, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``[N, H]``: log pi(a_t | s_t) under the Gaussian policy ``params``."""
    return gaussian_log_prob(forward(model, params, buffers, obs), params[LOG_STD], actions)


def dice_objective(model: nn.Module, params: Params, buffers: Params, obs: torch.Tensor, actions: torch.Tensor,
                   rewards: torch.Tensor, gamma: float, normalize: bool = False) -> torch.Tensor:  # fmt: skip
    """The surrogate above for one task's collection (``[N, H, ...]``); to be maximised."""
    logp = log_probs(model, params, buffers, obs, actions)
    horizon = rewards.shape[-1]
    d = discounts(horizon, gamma, rewards)
    values = linear_baseline(obs, rewards, gamma)
    rewarded = magic_box(torch.cumsum(logp, -1)) * d * rewards
    baseline = (1 - magic_box(logp)) * d * values
    scale = horizon * ((returns_to_go(rewards, gamma) - values).std().clamp_min(1e-8) if normalize else 1.0)
    return (rewarded + baseline).sum(-1).mean() / scale


def advantages(obs: torch.Tensor, rewards: torch.Tensor, gamma: float, normalize: bool) -> torch.Tensor:
    """``[N, H]``: G_t - b_t with the linear baseline (a constant of the data), standardised over
    the collection with ``normalize`` (ProMP's and PPO's advantages)."""
    a = returns_to_go(rewards, gamma) - linear_baseline(obs, rewards, gamma)
    return (a - a.mean()) / a.std().clamp_min(1e-8) if normalize else a


def likelihood_ratio(model: nn.Module, params: Params, buffers: Params, obs: torch.Tensor, actions: torch.Tensor,
                     old_logp: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``[N, H]``: pi_params(a_t | s_t) / pi_old(a_t | s_t), per step."""
    return torch.exp(log_probs(model, params, buffers, obs, actions) - old_logp)


def lvc_objective(model: nn.Module, params: Params, buffers: Params, obs: torch.Tensor, actions: torch.Tensor,
                  rewards: torch.Tensor, old_logp: torch.Tensor, gamma: float, normalize: bool) -> torch.Tensor:  # fmt: skip
    """ProMP's low-variance curvature surrogate (Rothfuss et al., ICLR 2019, eq. 7): the mean over
    steps of pi_params / pi_old times the advantage, on trajectories sampled from pi_old. At
    ``params`` = old its gradient is the policy gradient; its Hessian keeps the per-step
    score-function terms and drops DiCE's cross-step ones (lower variance, biased)."""
    ratio = likelihood_ratio(model, params, buffers, obs, actions, old_logp)
    return (ratio * advantages(obs, rewards, gamma, normalize)).mean()


def clipped_objective(ratio: torch.Tensor, advantage: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al., 2017): the mean of min(r A, clip(r, 1 - eps, 1 + eps) A)."""
    return torch.minimum(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage).mean()
