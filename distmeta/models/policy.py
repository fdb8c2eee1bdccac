"""The Gaussian policy of the MAML paper's reinforcement-learning experiments: an MLP with tanh
hidden layers (100-100) giving the action mean, and a learned state-independent log standard
deviation per action dimension."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

LOG_STD = "log_std"
"""The parameter holding the log standard deviations (``[actions]``)."""


class GaussianMLP(nn.Module):
    """``forward(obs)`` is the action mean; ``log_std`` is a parameter of its own, initialised to
    ``log(init_std)`` (1.0, as MAML-RL). ``body`` is the hidden layers, ``head`` the mean layer."""

    def __init__(self, observations: int, hidden: Sequence[int] = (100, 100), actions: int = 1, init_std: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = observations
        for h in hidden:
            layers += [nn.Linear(width, h), nn.Tanh()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, actions)
        self.log_std = nn.Parameter(torch.full((actions,), math.log(init_std)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs))


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log density of ``actions [..., A]`` under N(mean, exp(log_std)^2), summed over the last dim."""
    z = (actions - mean) * torch.exp(-log_std)
    return -0.5 * (z**2).sum(-1) - log_std.sum(-1) - 0.5 * mean.shape[-1] * math.log(2 * math.pi)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of the diagonal Gaussian (independent of the mean)."""
    return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


def gaussian_kl(mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of two diagonal Gaussians, summed over the last dim."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    return (log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5).sum(-1)
