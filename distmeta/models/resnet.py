"""The residual backbones of the few-shot literature since 2019.

- :class:`ResNet12`: the ResNet-12 of TADAM (Oreshkin et al. 2018) and MetaOptNet (Lee et al.
  2019): four residual blocks of widths 64-160-320-640, each three 3x3 convolutions with
  normalisation and LeakyReLU(0.1), a 1x1 convolution + normalisation shortcut and 2x2
  max-pooling, with DropBlock (:mod:`distmeta.models.dropblock`) after the last two; then global
  average pooling to 640 features (about 12.4M parameters).
- :class:`WideResNet`: WRN-28-10 (Zagoruyko & Komodakis 2016) as LEO (Rusu et al. 2019) and the
  "good embedding" papers use it: a 3x3 stem of 16 filters, three groups of four pre-activation
  blocks of widths 160-320-640 (strides 1, 2, 2), normalisation, ReLU and global average pooling
  (about 36.5M parameters).

Both have a ``body`` (images -> features) and a ``head`` (linear, or none for metric methods),
as every backbone does. Convolutions carry no bias: each is followed by a normalisation that
subtracts it again (see :func:`distmeta.models.conv4.conv_block`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from distmeta.models.dropblock import DropBlock2d, batch_keys
from distmeta.models.norms import BatchStatNorm2d

Norm = Callable[[int], nn.Module]

RESNET12_WIDTHS = (64, 160, 320, 640)
WRN_WIDTHS = (16, 160, 320, 640)
"""WRN-28-10: the stem's 16 filters, then 16 x 10, 32 x 10 and 64 x 10."""


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class GlobalPool(nn.Module):
    """Average over the spatial dimensions: ``[N, C, H, W]`` -> ``[N, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ResidualBlock12(nn.Module):
    """One ResNet-12 block: (conv, norm, LeakyReLU) x 2, conv, norm; plus the 1x1 shortcut;
    LeakyReLU; 2x2 max-pool; then DropBlock when ``drop`` is given (MetaOptNet's order)."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm, drop: DropBlock2d | None = None):
        super().__init__()
        self.conv1, self.norm1 = conv3x3(in_channels, out_channels), norm(out_channels)
        self.conv2, self.norm2 = conv3x3(out_channels, out_channels), norm(out_channels)
        self.conv3, self.norm3 = conv3x3(out_channels, out_channels), norm(out_channels)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), norm(out_channels))
        self.act = nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(2)
        self.drop = drop

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.act(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        out = self.pool(self.act(out + self.shortcut(x)))
        return out if self.drop is None else self.drop(out, keys)


class ResNet12Body(nn.Sequential):
    """The blocks and the pooling. The DropBlock noise is keyed by the body's input batch
    (:func:`~distmeta.models.dropblock.batch_keys`), which every block that drops receives."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drops = self.training and any(getattr(m, "drop", None) is not None for m in self)
        keys = batch_keys(x) if drops else None
        for m in self:
            x = m(x, keys) if isinstance(m, ResidualBlock12) else m(x)
        return x


class ResNet12(nn.Module):
    """``[N, in_channels, size, size]`` images -> ``[N, num_classes]`` logits (``num_classes=0``:
    the ``widths[-1]`` features). Each block halves the side (floored): 84 ends at 5, 32 at 2.
    ``dropblock``: the rate DropBlock drops in the last two blocks (0: none); ``dropblock_size``
    its square's side (0: the last feature map's side, at most 5: MetaOptNet's 5 at 84x84, whose
    maps end at 5x5, and 2 at 32x32, whose maps end at 2x2)."""

    def __init__(
        self, in_channels: int = 3, num_classes: int = 5, widths: Sequence[int] = RESNET12_WIDTHS, image_size: int = 84,
        norm: Norm = BatchStatNorm2d, dropblock: float = 0.0, dropblock_size: int = 0,
    ):  # fmt: skip
        super().__init__()
        if len(widths) != 4 or any(w <= 0 for w in widths):
            raise ValueError(f"resnet12 takes four positive block widths, got {list(widths)}")
        if image_size < 16:
            raise ValueError(f"image_size={image_size} is too small for four 2x2 poolings (need at least 16)")
        ins = (in_channels, *widths[:-1])
        side = dropblock_size or min(5, image_size // 16)
        drops = [None, None] + [DropBlock2d(dropblock, side, salt=b) if dropblock > 0 else None for b in (2, 3)]
        blocks = [ResidualBlock12(i, o, norm, d) for i, o, d in zip(ins, widths, drops)]
        self.body = ResNet12Body(*blocks, GlobalPool())
        self.head = nn.Linear(widths[-1], num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class WideBlock(nn.Module):
    """A pre-activation wide block: norm, ReLU, 3x3 conv (stride), norm, ReLU, 3x3 conv, plus the
    input (or a strided 1x1 convolution of the activated input when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: Norm):
        super().__init__()
        self.norm1, self.conv1 = norm(in_channels), conv3x3(in_channels, out_channels, stride)
        self.norm2, self.conv2 = norm(out_channels), conv3x3(out_channels, out_channels)
        self.act = nn.ReLU()
        changes = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if changes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.norm1(x))
        out = self.conv2(self.act(self.norm2(self.conv1(a))))
        return out + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(nn.Module):
    """WRN-``depth``: ``(depth - 4) / 6`` blocks per group; ``widths`` = (stem, group 1, 2, 3)."""

    def __init__(
        self, in_channels: int = 3, num_classes: int = 5, widths: Sequence[int] = WRN_WIDTHS, depth: int = 28,
        norm: Norm = BatchStatNorm2d,
    ):  # fmt: skip
        super().__init__()
        if len(widths) != 4 or any(w <= 0 for w in widths):
            raise ValueError(f"wrn28_10 takes four positive widths (stem and three groups), got {list(widths)}")
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"a wide ResNet's depth is 6n + 4 (n >= 1), got {depth}")
        n = (depth - 4) // 6
        layers: list[nn.Module] = [conv3x3(in_channels, widths[0])]
        width = widths[0]
        for group, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                layers.append(WideBlock(width, group, stride if i == 0 else 1, norm))
                width = group
        self.body = nn.Sequential(*layers, norm(width), nn.ReLU(), GlobalPool())
        self.head = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
