"""Returns-to-go and the linear feature baseline of MAML-RL (Duan et al., rllab's
``LinearFeatureBaseline``), fitted per task and collection on its own trajectories."""

from __future__ import annotations

import torch

REG = 1e-5
"""Ridge coefficient of the baseline's least-squares fit (rllab's)."""


def discounts(horizon: int, gamma: float, like: torch.Tensor) -> torch.Tensor:
    """``[H]``: gamma^t."""
    return gamma ** torch.arange(horizon, dtype=like.dtype, device=like.device)


def returns_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """``[..., H]``: G_t = sum_{t' >= t} gamma^(t' - t) r_t'."""
    h = rewards.shape[-1]
    d = discounts(h, gamma, rewards)
    # G_t = (sum_{t'>=t} gamma^t' r_t') / gamma^t, computed as a reversed cumulative sum
    tail = torch.flip(torch.cumsum(torch.flip(rewards * d, (-1,)), -1), (-1,))
    return tail / d


def features(obs: torch.Tensor) -> torch.Tensor:
    """``[N, H, F]``: rllab's features: the clipped observation and its square, the time step
    (scaled by 100) to the third power, and a constant."""
    n, h, _ = obs.shape
    o = obs.clamp(-10, 10)
    al = (torch.arange(h, dtype=obs.dtype, device=obs.device) / 100.0).view(1, h, 1).expand(n, h, 1)
    return torch.cat([o, o**2, al, al**2, al**3, torch.ones_like(al)], -1)


def linear_baseline(obs: torch.Tensor, rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """``[N, H]``: the value estimate at each visited state: a ridge regression of the
    returns-to-go on :func:`features`, fitted on these trajectories (float64, no gradient)."""
    x = features(obs.detach()).double().flatten(0, 1)
    g = returns_to_go(rewards.detach(), gamma).double().flatten()
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(x.T @ x + REG * eye, x.T @ g)
    return (x @ w).view(rewards.shape).to(rewards.dtype)
