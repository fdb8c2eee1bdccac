"""CAVIA: Zintgraf, Shiarlis, Kurin, Hofmann & Whiteson, "Fast Context Adaptation via
Meta-Learning", ICML 2019.

A task adapts only a few context parameters phi, reset to zero for every task; the network's own
weights theta are meta-parameters the inner loop only reads:

    phi_0 = 0,   phi_{j+1} = phi_j - alpha * grad_phi L_S(theta, phi_j),   objective L_Q(theta, phi_steps),

differentiated through the inner loop (second order) or not (first order). The context enters
the network where :class:`ContextModel` puts it: for an MLP concatenated to the input (as the
paper's regression model: a linear map of phi added to the first layer's pre-activation, the same
function as the concatenated input), for Conv4 as FiLM after a convolution block (the paper's
image model: a per-channel scale 1 + W_s phi and shift W_b phi). With phi = 0 the network is the
plain one, whatever W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from distmeta.algorithms.base import Mode, Params
from distmeta.algorithms.gradient import GradientAdaptation

CONTEXT = "context"
"""The inner loop's one fast entry: the task's context parameters (not a meta-parameter)."""
FILM_BLOCK = 2
"""Conv4: the block after which FiLM modulates (the third of four, as the paper's model)."""


def _modulated(net: nn.Module) -> tuple[int, int, bool]:
    """``(layer index in net.body, width, scales)``: where ``net``'s context enters and how wide
    the modulated features are; an MLP only shifts (a concatenated input), Conv4 scales too."""
    body = getattr(net, "body", None)
    layers = list(body) if isinstance(body, nn.Sequential) else []
    if layers and isinstance(layers[0], nn.Linear):
        return 0, layers[0].out_features, False
    if len(layers) > FILM_BLOCK and isinstance(layers[0], nn.Sequential) and isinstance(layers[0][0], nn.Conv2d):
        return FILM_BLOCK, layers[FILM_BLOCK][0].out_channels, True
    raise ValueError(f"context modulation needs an MLP or a Conv4 network, not {type(net).__name__}")


class ContextModel(nn.Module):
    """``net`` with a context input: ``forward(x, context)``; ``film.shift`` (and for Conv4
    ``film.scale``) map the context to the modulation. Per-family networks offer their views,
    sharing the modulation's weights."""

    def __init__(self, net: nn.Module, contexts: int, film: nn.ModuleDict | None = None):
        super().__init__()
        self.net = net
        probe = net.view(net.labels[0]) if getattr(net, "labels", None) else net
        self.at, width, scales = _modulated(probe)
        if film is None:
            film = nn.ModuleDict({"shift": nn.Linear(contexts, width, bias=False)})
            if scales:  # torch's default init, as the paper's extra input columns and FiLM layer
                film["scale"] = nn.Linear(contexts, width, bias=False)
        self.film = film
        self.contexts = contexts

    @property
    def labels(self) -> list[str] | None:
        return getattr(self.net, "labels", None)

    def view(self, label: str) -> ContextModel:
        """Family ``label``'s network with the shared modulation."""
        return ContextModel(self.net.view(label), self.contexts, self.film)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            context = x.new_zeros(self.contexts)
        layers = list(self.net.body)
        h = x.flatten(1) if isinstance(layers[0], nn.Linear) and x.dim() > 2 else x
        for i, layer in enumerate(layers):
            h = layer(h)
            if i == self.at:
                h = self._modulate(h, context)
        return self.net.head(h)

    def _modulate(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (h.dim() - 2)  # per feature, or per channel of a feature map
        shift = self.film["shift"](context).view(shape)
        if "scale" not in self.film:
            return h + shift
        return (1 + self.film["scale"](context)).view(shape) * h + shift


@dataclass(frozen=True)
class CAVIA(GradientAdaptation):
    """``contexts``: how many context parameters a task adapts."""

    name = "cavia"
    modulates = True
    contexts: int = 4

    @classmethod
    def own_settings(cls, extra: dict) -> dict:
        return {"contexts": int(extra.get("contexts", 4))}

    def meta_model(self, model: nn.Module) -> nn.Module:
        return ContextModel(model, self.contexts)

    def split(self, params: Params) -> tuple[Params, Params]:
        """The fast weights are a fresh zero context; every meta-parameter is slow."""
        return {CONTEXT: next(iter(params.values())).new_zeros(self.contexts)}, params

    def inner_step(self, model, fast, slow, buffers, z, y, first_order: bool, mode: Mode = Mode()) -> Params:
        if mode.autograd and not fast[CONTEXT].requires_grad:  # plain autograd differentiates a leaf
            fast = {CONTEXT: fast[CONTEXT].detach().requires_grad_()}
        return super().inner_step(model, fast, slow, buffers, z, y, first_order, mode)

    def predict(self, model, fast: Params, slow: Params, buffers: Params, z: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (slow, buffers), (z, fast[CONTEXT]))
