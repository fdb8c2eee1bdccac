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
