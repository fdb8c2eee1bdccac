"""Functional-friendly networks (no ray/mlflow/lightning/omegaconf)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from distmeta.models.conv4 import BatchStatNorm2d, Conv4
from distmeta.models.mlp import MLP


def build(name: str, *, hidden: Sequence[int], in_features: int = 1, out_features: int = 1) -> nn.Module:
    """Construct a model by name; the caller seeds torch beforehand for reproducible init."""
    if name == "mlp":
        return MLP(in_features, hidden, out_features)
    raise ValueError(f"unknown model '{name}'")


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


__all__ = ["BatchStatNorm2d", "Conv4", "MLP", "build", "flatten", "unflatten"]
