"""Conv4: the backbone of MAML (Finn et al. 2017) and Prototypical Networks (Snell et al. 2017).

Four blocks of 3x3 convolution (``hidden`` filters), batch normalisation, ReLU and 2x2 max-pooling,
then a linear head over the flattened features. ``body`` maps images to features, ``head`` is the
linear classifier (ANIL adapts only the head; ``num_classes=0`` drops it for metric methods).
"""

from __future__ import annotations

import torch
from torch import nn


class BatchStatNorm2d(nn.Module):
    """Batch normalisation with the statistics of the batch at hand, always (transductive, as in
    the MAML reference code): no running averages, so a task's support and query sets are each
    normalised by their own statistics in training and evaluation alike.

    Written from ``mean``/``var`` rather than ``F.batch_norm`` on purpose: in torch 2.13,
    ``torch.func.vmap`` over the fused ``F.batch_norm`` in training mode gives a wrong
    second-order gradient, while this form agrees with a plain loop and finite differences
    (``tests/models/test_conv4.py``).
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [N, C, H, W], normalised per channel over N, H and W (biased variance, as BatchNorm2d)."""
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    # no convolution bias: the normalisation subtracts it again, so its true gradient is zero and
    # Adam would turn float noise in it into full-size steps (weights that differ between shard
    # layouts while the network's outputs do not)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        BatchStatNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """``[N, in_channels, size, size]`` images -> ``[N, num_classes]`` logits.

    Each pooling floors the side: 28x28 Omniglot images end at 1x1, 84x84 mini-ImageNet at 5x5,
    as in the reference implementations.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 5, hidden: int = 64, image_size: int = 28):
        super().__init__()
        blocks = [conv_block(in_channels if i == 0 else hidden, hidden) for i in range(4)]
        self.body = nn.Sequential(*blocks, nn.Flatten())
        side = image_size
        for _ in range(4):
            side //= 2
        if side < 1:
            raise ValueError(f"image_size={image_size} is too small for four 2x2 poolings (need at least 16)")
        # num_classes=0: an embedding network (flattened features), as metric methods use it
        self.head = nn.Linear(hidden * side * side, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
