"""Functional-friendly networks (no ray/mlflow/lightning/omegaconf)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from distmeta.models.conv4 import BatchStatNorm2d, Conv4
from distmeta.models.heads import MultiHead, family_view, view_names
from distmeta.models.mlp import MLP

MODELS = ("mlp", "conv4")


@dataclass(frozen=True)
class ModelSpec:
    """A network by name, with the input shape and output width the task family dictates.

    ``input_shape``: ``(features,)`` or ``(channels, H, W)``; ``outputs``: regression targets or
    classes (0: an embedding network with no head, for metric methods such as ProtoNets).
    """

    name: str
    input_shape: tuple[int, ...]
    outputs: int
    hidden: tuple[int, ...] = (40, 40)
    filters: int = 64
    heads: tuple[tuple[str, int], ...] = ()
    """Per-family heads ``(label, outputs)`` on one shared body (:class:`MultiHead`); empty: one head of ``outputs``."""

    def build(self) -> nn.Module:
        """Construct the network; the caller seeds torch beforehand for a reproducible init."""
        if not self.heads:
            return self._single(self.outputs)
        net = self._single(self.heads[0][1])
        features = net.head.in_features
        return MultiHead(net, {label: nn.Linear(features, n) for label, n in self.heads})

    def _single(self, outputs: int) -> nn.Module:
        if self.name == "mlp":
            if outputs == 0:
                raise ValueError("an embedding MLP needs a head width; use conv4 for ProtoNets")
            return MLP(math.prod(self.input_shape), self.hidden, outputs)
        if self.name == "conv4":
            if len(self.input_shape) != 3 or self.input_shape[1] != self.input_shape[2]:
                raise ValueError(f"conv4 takes square images (channels, size, size), not inputs of shape {self.input_shape}")
            channels, size, _ = self.input_shape
            return Conv4(channels, outputs, self.filters, size)
        raise ValueError(f"unknown model '{self.name}'; known: {', '.join(MODELS)}")


def flatten(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a parameter (or gradient) dict, in its order, into one contiguous 1-D tensor."""
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`flatten`: views into ``flat`` shaped like ``like``'s entries."""
    out, offset = {}, 0
    for name, ref in like.items():
        n = ref.numel()
        out[name] = flat[offset : offset + n].view_as(ref)
        offset += n
    if offset != flat.numel():
        raise ValueError(f"flat tensor has {flat.numel()} elements, the parameters {offset}")
    return out


__all__ = [
    "MODELS",
    "BatchStatNorm2d",
    "Conv4",
    "MLP",
    "ModelSpec",
    "MultiHead",
    "family_view",
    "flatten",
    "unflatten",
    "view_names",
]
