"""The normalisations a backbone can use (``model.norm``), and the batch statistics that keep a
running-statistics norm's estimates.

- ``batch`` (:class:`BatchStatNorm2d`): transductive batch statistics always, in training and
  evaluation alike (MAML's reference code): no state, so an adapted network needs nothing but
  its weights. The default of the algorithms with an inner loop.
- ``running`` (:class:`RunningBatchNorm2d`): batch statistics in training, running estimates in
  evaluation (``eval()``), as standard batch normalisation: the default of metric methods
  (ProtoNets), whose test queries should not be normalised by each other.

Both are written from ``mean``/``var`` rather than ``F.batch_norm``: in torch 2.13,
``torch.func.vmap`` over the fused ``F.batch_norm`` in training mode gives a wrong second-order
gradient, while this form agrees with a plain loop and finite differences
(``tests/models/test_conv4.py``). Neither updates its estimates in ``forward`` (a pure function
under ``vmap`` cannot): the shards measure the batch statistics of their tasks
(:func:`batch_statistics`), the learner averages them over the meta-batch and moves the running
estimates (:func:`update_running`), so the estimates do not depend on how tasks were sharded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call


def _batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    return mean, ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)


class BatchStatNorm2d(nn.Module):
    """Batch normalisation with the statistics of the batch at hand, always (no running
    averages): a task's support and query sets are each normalised by their own statistics."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [N, C, H, W], normalised per channel over N, H and W (biased variance, as BatchNorm2d)."""
        mean, var = _batch_moments(x)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1)


class RunningBatchNorm2d(BatchStatNorm2d):
    """Batch statistics in training mode; in evaluation mode the running estimates
    ``running_mean`` / ``running_var`` (buffers, checkpointed with the weights)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(channels, eps)
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return (x - self.running_mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


NORMS: dict[str, Callable[[int], nn.Module]] = {"batch": BatchStatNorm2d, "running": RunningBatchNorm2d}
"""``model.norm``: the normalisation layer a convolutional backbone is built with."""


def running_layers(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` that keep running estimates (in ``named_modules`` order)."""
    return [n for n, m in model.named_modules() if isinstance(m, RunningBatchNorm2d)]


def batch_statistics(
    model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], batches: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The batch mean and variance each running norm of ``model`` sees, averaged over
    ``batches`` (a task's support set and its query set, each a forward pass in training mode, as
    the algorithms embed them): one flat vector, layer after layer, ``[mean, var]`` per layer."""
    layers = dict(model.named_modules())
    names = running_layers(model)
    sums = {n: [] for n in names}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].detach()
            mean, var = _batch_moments(x)
            n = x.numel() // x.shape[1]
            unbiased = var * (n / max(n - 1, 1))  # what BatchNorm2d's running variance averages
            sums[name].append(torch.cat([mean.flatten(), unbiased.flatten()]))

        return record

    handles = [layers[n].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            for x in batches:
                functional_call(model, (params, buffers), (x,))
    finally:
        for h in handles:
            h.remove()
    return torch.cat([torch.stack(sums[n]).mean(0) for n in names]) if names else torch.zeros(0)


def update_running(model: nn.Module, stats: torch.Tensor) -> None:
    """Move every running norm's estimates towards ``stats`` (the meta-batch's mean of
    :func:`batch_statistics`) by its momentum, as ``BatchNorm2d`` does per batch."""
    offset = 0
    with torch.no_grad():
        for name in running_layers(model):
            m = model.get_submodule(name)
            c = m.running_mean.numel()
            mean, var = stats[offset : offset + c], stats[offset + c : offset + 2 * c]
            m.running_mean.mul_(1 - m.momentum).add_(mean.to(m.running_mean), alpha=m.momentum)
            m.running_var.mul_(1 - m.momentum).add_(var.to(m.running_var), alpha=m.momentum)
            offset += 2 * c
    if offset != stats.numel():
        raise ValueError(f"{stats.numel()} statistics for running norms of {offset} values")
