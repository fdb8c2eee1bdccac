"""Functional-friendly networks and their registry (no ray/mlflow/lightning/omegaconf)."""

from __future__ import annotations

from distmeta.models.conv4 import Conv4
from distmeta.models.heads import MultiHead, PerFamily, Separate, family_view, view_names
from distmeta.models.mlp import MLP
from distmeta.models.norms import NORMS, BatchStatNorm2d, RunningBatchNorm2d, batch_statistics, running_layers, update_running
from distmeta.models.policy import LOG_STD, GaussianMLP, gaussian_entropy, gaussian_kl, gaussian_log_prob
from distmeta.models.registry import HEADS, MODELS, SHARES, ModelKind, ModelSpec, flatten, model_kind, register, unflatten
from distmeta.models.resnet import RESNET12_WIDTHS, WRN_WIDTHS, ResNet12, WideResNet


def _mlp(spec: ModelSpec, outputs: int) -> MLP:
    if outputs == 0:
        raise ValueError("an embedding MLP needs a head width; use conv4 for ProtoNets")
    return MLP(spec.features, spec.hidden, outputs)


def _square(spec: ModelSpec) -> tuple[int, int]:
    shape = spec.input_shape
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"{spec.name} takes square images (channels, size, size), not inputs of shape {shape}")
    return shape[0], shape[1]


def _conv4(spec: ModelSpec, outputs: int) -> Conv4:
    channels, size = _square(spec)
    return Conv4(channels, outputs, spec.filters, size, NORMS[spec.norm])


def _resnet12(spec: ModelSpec, outputs: int) -> ResNet12:
    channels, size = _square(spec)
    widths = spec.widths or RESNET12_WIDTHS
    return ResNet12(channels, outputs, widths, size, NORMS[spec.norm], spec.dropblock, spec.dropblock_size)


def _wrn28_10(spec: ModelSpec, outputs: int) -> WideResNet:
    channels, _ = _square(spec)
    return WideResNet(channels, outputs, spec.widths or WRN_WIDTHS, depth=28, norm=NORMS[spec.norm])


def _gaussian_mlp(spec: ModelSpec, outputs: int) -> GaussianMLP:
    return GaussianMLP(spec.features, spec.hidden, outputs)


register(ModelKind("mlp", _mlp, modulated=True))
register(ModelKind("conv4", _conv4, images_only=True, normalised=True, modulated=True))
register(ModelKind("resnet12", _resnet12, images_only=True, widths=RESNET12_WIDTHS, normalised=True, drops=True))
register(ModelKind("wrn28_10", _wrn28_10, images_only=True, widths=WRN_WIDTHS, normalised=True))
register(ModelKind("gaussian_mlp", _gaussian_mlp, policy=True))

__all__ = [
    "HEADS", "MODELS", "SHARES", "PerFamily", "Separate", "BatchStatNorm2d", "Conv4", "MLP", "ModelKind", "ModelSpec", "MultiHead", "family_view", "flatten",
    "model_kind", "register", "unflatten", "view_names", "ResNet12", "WideResNet", "NORMS", "RunningBatchNorm2d",
    "batch_statistics", "running_layers", "update_running", "LOG_STD", "GaussianMLP", "gaussian_entropy", "gaussian_kl",
    "gaussian_log_prob",
]  # fmt: skip
