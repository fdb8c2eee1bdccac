"""Conv4: the backbone of MAML (Finn et al. 2017) and Prototypical Networks (Snell et al. 2017).

Four blocks of 3x3 convolution (``hidden`` filters), normalisation (:mod:`distmeta.models.norms`), ReLU and 2x2 max-pooling,
then a linear head over the flattened features. ``body`` maps images to features, ``head`` is the
linear classifier (ANIL adapts only the head; ``num_classes=0`` drops it for metric methods).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from distmeta.models.norms import BatchStatNorm2d


def conv_block(in_channels: int, out_channels: int, norm: Callable[[int], nn.Module] = BatchStatNorm2d) -> nn.Sequential:
    # no convolution bias: the normalisation subtracts it again, so its true gradient is zero and
    # Adam would turn float noise in it into full-size steps (weights that differ between shard
    # layouts while the network's outputs do not)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        norm(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """``[N, in_channels, size, size]`` images -> ``[N, num_classes]`` logits.

    Each pooling floors the side: 28x28 Omniglot images end at 1x1, 84x84 mini-ImageNet at 5x5,
    as in the reference implementations.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 5, hidden: int = 64, image_size: int = 28,
        norm: Callable[[int], nn.Module] = BatchStatNorm2d,
    ):  # fmt: skip
        super().__init__()
        blocks = [conv_block(in_channels if i == 0 else hidden, hidden, norm) for i in range(4)]
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
