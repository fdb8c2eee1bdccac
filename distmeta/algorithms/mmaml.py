"""MMAML: Vuorio, Sun, Hu & Lim, "Multimodal Model-Agnostic Meta-Learning via Task-Aware
Modulation", NeurIPS 2019.

A modulation network reads a task's support set and returns FiLM parameters for every hidden
layer of the task network, before the inner loop; the inner loop then adapts the task network's
weights under that modulation, which stays fixed:

    tau = g_omega(S),   theta_{j+1} = theta_j - alpha * grad_theta L_S(theta_j; tau),   objective L_Q(theta_steps; tau).

omega (the modulation network) is trained only by the outer loss, through the inner loop. The
modulation network here is a permutation-invariant set encoder (an MLP over each support pair,
averaged, then a linear map to the FiLM parameters) rather than the paper's bidirectional LSTM: a
support set has no order, and the mean over pairs is one batched op under ``vmap`` where an LSTM
is a sequential loop. (Not measured against the LSTM.) Images are paired with their one-hot
labels after two convolution blocks of their own. FiLM: h -> (1 + tanh(gamma)) h + beta after
each hidden Linear of an MLP (before its ReLU) and after each of Conv4's blocks; the map to
(gamma, beta) starts at a Linear layer's default initialisation, as the authors' embedding layers:
a zero start (every task beginning at the plain network) learned the modulation more slowly on the
3-mode benchmark (README, "Task-aware modulation"). The gain is bounded in
(0, 2): unbounded, a few outer steps on the 5-mode benchmark made some task's gain large enough
for the inner loop to diverge (losses of 1e7, then a non-finite meta-gradient, within 20 steps)
without ``algorithm.inner_grad_clip``; with the clamp, an unbounded gain measured no better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from distmeta.algorithms.base import Params
from distmeta.algorithms.gradient import GradientAdaptation
from distmeta.models.conv4 import conv_block

NET, MODULATOR = "net.", "modulator."
TAU = "tau"
"""The conditioned slow weights' entry holding a task's FiLM parameters (not a meta-parameter)."""


def _film_points(net: nn.Module) -> tuple[list[int], list[int]]:
    """``(indices in net.body, widths)`` of the layers whose outputs FiLM modulates."""
    layers = list(getattr(net, "body", []) or [])
    linear = [(i, m.out_features) for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    blocks = [
        (i, m[0].out_channels) for i, m in enumerate(layers) if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d)
    ]
    points = linear or blocks
    if not points:
        raise ValueError(f"FiLM modulation needs an MLP or a Conv4 network, not {type(net).__name__}")
    return [i for i, _ in points], [w for _, w in points]


class SetEncoder(nn.Module):
    """Support pairs -> the task's FiLM parameters: an MLP over each (input, target) pair, the
    mean over the set, a linear map. ``images``: inputs are images, encoded by
    two convolution blocks first; targets are class indices, one-hot over ``classes``."""

    def __init__(self, inputs: int, classes: int, hidden: int, out: int, image_channels: int = 0):
        super().__init__()
        self.classes = classes
        self.image = (
            nn.Sequential(conv_block(image_channels, hidden), conv_block(hidden, hidden), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            if image_channels
            else None
        )
        width = (hidden if image_channels else inputs) + (classes or 1)
        self.pair = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.film = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        features = self.image(x) if self.image is not None else x.flatten(1)
        target = nn.functional.one_hot(y.long(), self.classes).to(features.dtype) if self.classes else y.reshape(len(y), -1)
        return self.film(self.pair(torch.cat([features, target], 1)).mean(0))


class ModulatedModel(nn.Module):
    """``net`` (the task network) and ``modulator`` (a :class:`SetEncoder`); ``forward(x, tau)``
    runs ``net`` with FiLM parameters ``tau`` (none: the plain network)."""

    def __init__(self, net: nn.Module, hidden: int, classes: int, image_channels: int, inputs: int):
        super().__init__()
        self.net = net
        self.points, self.widths = _film_points(net)
        self.modulator = SetEncoder(inputs, classes, hidden, 2 * sum(self.widths), image_channels)

    def forward(self, x: torch.Tensor, tau: torch.Tensor | None = None) -> torch.Tensor:
        layers = list(self.net.body)
        h = x.flatten(1) if isinstance(layers[0], nn.Linear) and x.dim() > 2 else x
        offset = 0
        for i, layer in enumerate(layers):
            h = layer(h)
            if tau is not None and i in self.points:
                w = self.widths[self.points.index(i)]
                shape = (1, -1) + (1,) * (h.dim() - 2)
                gamma, beta = torch.tanh(tau[offset : offset + w]).view(shape), tau[offset + w : offset + 2 * w].view(shape)
                h, offset = (1 + gamma) * h + beta, offset + 2 * w
        return self.net.head(h)


@dataclass(frozen=True)
class MMAML(GradientAdaptation):
    """``hidden``: the set encoder's width."""

    name = "mmaml"
    modulates = True
    one_network = True
    hidden: int = 40

    @classmethod
    def own_settings(cls, extra: dict) -> dict:
        return {"hidden": int(extra.get("hidden", 40))}

    def meta_model(self, model: nn.Module) -> nn.Module:
        if getattr(model, "labels", None):
            raise ValueError("mmaml modulates one network: use model.heads=shared and model.share=all")
        head = getattr(model, "head", None)
        classes = head.out_features if self.classification and isinstance(head, nn.Linear) else 0
        first = list(model.body)[0]
        image_channels = first[0].in_channels if isinstance(first, nn.Sequential) else 0
        inputs = first.in_features if isinstance(first, nn.Linear) else 0
        return ModulatedModel(model, self.hidden, classes, image_channels, inputs)

    def split(self, params: Params) -> tuple[Params, Params]:
        """Fast: the task network; slow: the modulation network."""
        return {k: v for k, v in params.items() if k.startswith(NET)}, {
            k: v for k, v in params.items() if k.startswith(MODULATOR)
        }

    def condition(self, model, slow: Params, buffers: Params, support_x, support_y) -> Params:
        strip = {k[len(MODULATOR) :]: v for k, v in slow.items() if k.startswith(MODULATOR)}
        own = {k[len(MODULATOR) :]: v for k, v in buffers.items() if k.startswith(MODULATOR)}
        return {**slow, TAU: functional_call(model.modulator, (strip, own), (support_x, support_y))}

    def predict(self, model, fast: Params, slow: Params, buffers: Params, z: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (fast, buffers), (z, slow[TAU]))
