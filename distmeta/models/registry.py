"""The model registry: every network a config may name, with what inputs it takes.

Adding a backbone is one module plus one :func:`register` call. A registered builder takes the
:class:`ModelSpec` and the width of the head (0: an embedding network without a head, for metric
methods) and returns a module with a ``body`` (inputs -> features) and a ``head``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from distmeta.models.heads import MultiHead, Separate
from distmeta.registry import Registry

HEADS = ("shared", "per_family")
"""``model.heads``: one head for every family of a mixture, or one per family."""
SHARES = ("all", "none")
"""``model.share``: one network for every family of a mixture (with ``model.heads``' choice of
heads), or a whole network per family."""


@dataclass(frozen=True)
class ModelKind:
    name: str
    build: Callable[[ModelSpec, int], nn.Module]
    images_only: bool = False
    """Takes ``(channels, H, W)`` images only (convolutional backbones); else any input, flattened."""
    widths: tuple[int, ...] = ()
    """Its default stage widths, when ``model.widths`` may set them (residual backbones); empty: it takes none."""
    normalised: bool = False
    """Built with a normalisation layer that ``model.norm`` chooses (convolutional backbones)."""
    drops: bool = False
    """Takes ``model.dropblock`` (DropBlock in its last blocks: resnet12)."""
    policy: bool = False
    """A stochastic policy over observations (meta-RL families); the others map inputs to outputs."""
    modulated: bool = False
    """Task-aware modulation (CAVIA's context, MMAML's FiLM) knows where to enter its layers."""


MODELS: Registry[ModelKind] = Registry("model")


def register(kind: ModelKind) -> ModelKind:
    return MODELS.add(kind.name, kind)


def model_kind(name: str) -> ModelKind:
    return MODELS.lookup(name)


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
    widths: tuple[int, ...] = ()
    """Stage widths of a residual backbone; empty: the backbone's own (:attr:`ModelKind.widths`)."""
    norm: str = "batch"
    """The normalisation of a normalised backbone: a key of :data:`distmeta.models.norms.NORMS`."""
    dropblock: float = 0.0
    """DropBlock's rate in a backbone that :attr:`ModelKind.drops` (0: off)."""
    dropblock_size: int = 0
    """DropBlock's square side (0: the backbone's default)."""
    heads: tuple[tuple[str, int], ...] = ()
    """Per-family outputs ``(label, outputs)``: heads on one shared body (:class:`MultiHead`), or
    with ``share="none"`` whole networks (:class:`Separate`); empty: one network of ``outputs``."""
    share: str = "all"

    @property
    def features(self) -> int:
        return math.prod(self.input_shape)

    def build(self) -> nn.Module:
        """Construct the network; the caller seeds torch beforehand for a reproducible init."""
        kind = model_kind(self.name)
        if not self.heads:
            return kind.build(self, self.outputs)
        if self.share == "none":
            return Separate({label: kind.build(self, n) for label, n in self.heads})
        net = kind.build(self, self.heads[0][1])
        features = net.head.in_features
        return MultiHead(net, {label: nn.Linear(features, n) for label, n in self.heads})


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
