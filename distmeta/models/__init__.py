"""Functional-friendly networks and their registry (no ray/mlflow/lightning/omegaconf)."""

from __future__ import annotations

from distmeta.models.conv4 import BatchStatNorm2d, Conv4
from distmeta.models.heads import MultiHead, family_view, view_names
from distmeta.models.mlp import MLP
from distmeta.models.registry import HEADS, MODELS, ModelKind, ModelSpec, flatten, model_kind, register, unflatten


def _mlp(spec: ModelSpec, outputs: int) -> MLP:
    if outputs == 0:
        raise ValueError("an embedding MLP needs a head width; use conv4 for ProtoNets")
    return MLP(spec.features, spec.hidden, outputs)


def _conv4(spec: ModelSpec, outputs: int) -> Conv4:
    shape = spec.input_shape
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"conv4 takes square images (channels, size, size), not inputs of shape {shape}")
    return Conv4(shape[0], outputs, spec.filters, shape[1])


register(ModelKind("mlp", _mlp))
register(ModelKind("conv4", _conv4, images_only=True))

__all__ = [
    "HEADS", "MODELS", "BatchStatNorm2d", "Conv4", "MLP", "ModelKind", "ModelSpec", "MultiHead", "family_view", "flatten",
    "model_kind", "register", "unflatten", "view_names",
]  # fmt: skip
