"""DropBlock (Ghiasi, Lin & Le, NeurIPS 2018) with noise that is a pure function of the data.

DropBlock zeroes ``size x size`` squares of a feature map: each position of the region where a
square fits starts one with probability ``gamma``, chosen so that about ``rate`` of the map is
dropped, and the kept features are rescaled by the map's size over the kept count (MetaOptNet's
implementation, per batch).

Its noise cannot come from torch's RNG: a task's meta-gradient must be the same whichever shard
computes it, batched under ``vmap`` or one task at a time, however the meta-batch is chunked.
So the noise is counter-based: a hash of the network's *input* batch (the raw pixels a task
brings, themselves a pure function of ``(seed, stream, step, index)``), the image's position in
it, the layer and the feature coordinates. A new episode draws new squares; the same batch (one
task's support set, at every inner step) draws the same ones; the support and query sets of one
task differ. The masks depend on data only, never on parameters, so gradients treat them as
constants, as they treat a sampled mask.

The hash runs on int64 tensors modulo the Mersenne prime 2^31 - 1, with operands below 2^31, so
no product overflows: the same integers on CPU and GPU, under ``vmap`` or not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRIME = 2**31 - 1
_MULTIPLIERS = (0x2C1B3C6D, 0x297A2D39, 0x6B2F5E1D)
_QUANTUM = 4096.0
"""Pixels are hashed at 1/4096 resolution: adjacent uint8 values of a normalised image are tens of
quanta apart, and rounding an input that every path holds bit for bit gives the same integers."""


def mix(h: torch.Tensor) -> torch.Tensor:
    """A well-spread map of int64 values in ``[0, 2^31)`` onto ``[0, 2^31)`` (xor-shift and
    multiply rounds, as in splitmix/murmur finalisers, modulo 2^31 - 1)."""
    for m, shift in zip(_MULTIPLIERS, (16, 13, 15)):
        h = ((h ^ (h >> shift)) * m) % PRIME
    return h ^ (h >> 16)


def batch_keys(x: torch.Tensor) -> torch.Tensor:
    """``[N]`` keys for a batch of inputs ``[N, ...]``: each depends on every input of the batch and
    on the image's position in it."""
    n = x.shape[0]
    flat = x.detach().reshape(n, -1)
    q = torch.round(flat * _QUANTUM).long() % PRIME  # [N, D] in [0, P)
    weights = mix(torch.arange(1, flat.shape[1] + 1, device=x.device))
    per_image = ((q * weights) % PRIME).sum(1) % PRIME  # [N]; a sum of D terms below 2^31
    position = mix(torch.arange(1, n + 1, device=x.device))
    batch = mix(((per_image * position) % PRIME).sum() % PRIME)
    return mix((batch + position) % PRIME)


class DropBlock2d(nn.Module):
    """Drop about ``rate`` of ``[N, C, H, W]`` features in ``size x size`` squares, per channel,
    in training mode only (a square is clipped to a smaller map). ``salt`` tells layers apart:
    two layers draw independent squares."""

    def __init__(self, rate: float, size: int, salt: int = 0):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropBlock's rate is a probability below 1, got {rate}")
        if size < 1:
            raise ValueError(f"DropBlock's square has a positive side, got {size}")
        self.rate, self.size, self.salt = rate, size, salt

    def extra_repr(self) -> str:
        return f"rate={self.rate}, size={self.size}"

    def seeds(self, keys: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """``[N, C, H - s + 1, W - s + 1]``: 1 where a square of side ``s`` (the size clipped to
        the map) starts, each with probability ``gamma``, drawn by the ``[N]`` batch keys."""
        n, c, h, w = shape
        bs = self.side(h, w)
        gamma = self.rate / bs**2 * (h * w) / ((h - bs + 1) * (w - bs + 1))
        counter = torch.arange(1, c * (h - bs + 1) * (w - bs + 1) + 1, device=keys.device)
        layer_keys = mix((keys + mix(torch.tensor(self.salt + 1, device=keys.device))) % PRIME)
        u = mix((layer_keys.unsqueeze(1) + counter) % PRIME).to(dtype) / 2.0**31  # [N, seeds] uniform
        return (u < gamma).to(dtype).view(n, c, h - bs + 1, w - bs + 1)

    def side(self, h: int, w: int) -> int:
        return min(self.size, h, w)

    def mask(self, keys: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """The ``[N, C, H, W]`` keep mask (1 kept, 0 dropped): every seed drops its square."""
        bs = self.side(shape[2], shape[3])
        seeds = self.seeds(keys, shape, dtype)
        return 1.0 - F.max_pool2d(F.pad(seeds, [bs - 1] * 4), kernel_size=bs, stride=1)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        if not self.training or self.rate == 0.0 or keys is None:
            return x
        keep = self.mask(keys, x.shape, x.dtype)
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))
