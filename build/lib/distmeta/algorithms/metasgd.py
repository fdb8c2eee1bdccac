"""Meta-SGD: Li, Zhou, Chen & Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning", 2017.

Every weight w has its own learned inner step size a (same shape as w, initialised to the
configured inner LR), itself a meta-parameter: f_{j+1} = f_j - a * grad L_S(f_j) elementwise,
and the meta-gradient flows to both the initial weights and the step sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distmeta.algorithms.base import Params, forward_part
from distmeta.algorithms.gradient import GradientAdaptation

NET, LRS = "net.", "lrs."


class MetaSGDModel(nn.Module):
    """The network (``net``) plus one step-size tensor per weight (``lrs.<i>``, in ``net``'s order)."""

    def __init__(self, net: nn.Module, init_lr: float, lrs: list[nn.Parameter] | None = None):
        super().__init__()
        self.net = net
        self.lrs = nn.ParameterList(
            lrs if lrs is not None else [nn.Parameter(torch.full_like(p.detach(), init_lr)) for p in net.parameters()]
        )

    @property
    def labels(self) -> list[str] | None:
        """The families of a per-family-head network (None for one head)."""
        return getattr(self.net, "labels", None)

    def view(self, label: str) -> MetaSGDModel:
        """Family ``label``'s network (per-family heads) with the step sizes of its own weights."""
        net = self.net.view(label)
        index = {id(p): i for i, p in enumerate(self.net.parameters())}
        return MetaSGDModel(net, 0.0, [self.lrs[index[id(p)]] for p in net.parameters()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class MetaSGD(GradientAdaptation):
    name = "metasgd"

    def meta_model(self, model: nn.Module) -> nn.Module:
        return MetaSGDModel(model, self.inner.lr)

    def split(self, params: Params) -> tuple[Params, Params]:
        return ({k: v for k, v in params.items() if k.startswith(NET)}, {k: v for k, v in params.items() if k.startswith(LRS)})

    def predict(self, model, fast, slow, buffers, z) -> torch.Tensor:
        return forward_part(model, "net", fast, buffers, z)

    def update(self, fast: Params, slow: Params, grads: Params) -> Params:
        # fast keeps net's parameter order, which is the order of the step sizes
        return {k: w - slow[f"{LRS}{i}"] * grads[k] for i, (k, w) in enumerate(fast.items())}
