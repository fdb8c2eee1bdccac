"""MMAML: Vuorio, Sun, Hu & Lim, "Multimodal Model-Agnostic Meta-Learning via Task-Aware
Modulation", NeurIPS 2019.

A modulation network reads a task's support set and returns FiLM parameters for every hidden
layer of the task network, before the inner loop; the inner loop then adapts the task network's
weights under that modulation, which stays fixed:

    tau = g_omega(S),   theta_{j+1} = theta_j - alpha * grad_theta L_S(theta_j; tau),   objective L_Q(theta_steps; tau).

omega (the modulation network) is trained only by the outer loss, through the inner loop. Two
modulation networks (``algorithm.mmaml.encoder``): ``set``, a permutation-invariant set encoder (an
MLP over each support pair, averaged, then a linear map to the FiLM parameters): a support set has
no order, and the mean over pairs is one batched op under ``vmap``; and ``lstm``, the paper's
two-layer bidirectional LSTM over the pairs in the order sampled, its embedding the forward
direction's last output beside the backward direction's first (the authors' code), written out
cell by cell so that it runs under ``vmap`` and twice-differentiated. README, "Task-aware
modulation", compares them. Images are paired with their one-hot labels after two convolution
blocks of their own. FiLM: h -> (1 + tanh(gamma)) h + beta after
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


class PairEncoder(nn.Module):
    """The support set as rows of (input features, target): images through two convolution blocks
    of their own, class targets one-hot over ``classes``; with ``standardize``, a real target as
    (y - mean) / std over the set beside the set's mean and log std (std = sqrt(variance + 1e-4),
    so a constant set stays finite and twice differentiable). Subclasses read the rows into the FiLM
    parameters (``film``, a linear map from their embedding)."""

    def __init__(self, inputs: int, classes: int, hidden: int, image_channels: int, standardize: bool = False):
        super().__init__()
        self.classes, self.standardize = classes, standardize
        self.image = (
            nn.Sequential(conv_block(image_channels, hidden), conv_block(hidden, hidden), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            if image_channels
            else None
        )
        self.width = (hidden if image_channels else inputs) + (classes or (3 if standardize else 1))

    def pairs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        features = self.image(x) if self.image is not None else x.flatten(1)
        if self.classes:
            return torch.cat([features, nn.functional.one_hot(y.long(), self.classes).to(features.dtype)], 1)
        y = y.reshape(len(y), -1)
        if not self.standardize:
            return torch.cat([features, y], 1)
        mean = y.mean(0, keepdim=True)
        spread = ((y - mean) ** 2).mean(0, keepdim=True).add(1e-4).sqrt()
        return torch.cat([features, (y - mean) / spread, mean.expand_as(y), spread.log().expand_as(y)], 1)


class SetEncoder(PairEncoder):
    """An MLP over each support pair, the mean over the set, a linear map."""

    def __init__(self, inputs: int, classes: int, hidden: int, out: int, image_channels: int = 0, standardize: bool = False):
        super().__init__(inputs, classes, hidden, image_channels, standardize)
        self.pair = nn.Sequential(nn.Linear(self.width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.film = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.film(self.pair(self.pairs(x, y)).mean(0))


class LSTMCell(nn.Module):
    """One LSTM step, ``torch.nn.LSTM``'s equations and gate order (input, forget, cell, output)
    with one bias, on an unbatched row: ``vmap`` batches the tasks."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Linear(inputs + hidden, 4 * hidden)
        bound = hidden**-0.5  # torch.nn.LSTM's initialisation
        nn.init.uniform_(self.gates.weight, -bound, bound)
        nn.init.uniform_(self.gates.bias, -bound, bound)

    def run(self, rows: list[torch.Tensor]) -> list[torch.Tensor]:
        """The outputs ``h_t`` over ``rows``, from a zero state."""
        h = c = torch.zeros(self.hidden, dtype=rows[0].dtype, device=rows[0].device)
        out = []
        for x in rows:
            i, f, g, o = self.gates(torch.cat([x, h])).chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return out


class LSTMEncoder(PairEncoder):
    """A bidirectional LSTM of ``layers`` layers (``hidden`` wide each way) over the support pairs
    in order; the embedding is the forward direction's last output beside the backward
    direction's first, each having read the whole set; then a linear map."""

    def __init__(
        self,
        inputs: int,
        classes: int,
        hidden: int,
        out: int,
        image_channels: int = 0,
        standardize: bool = False,
        layers: int = 2,
    ):
        super().__init__(inputs, classes, hidden, image_channels, standardize)
        widths = [self.width] + [2 * hidden] * (layers - 1)
        self.cells = nn.ModuleList(LSTMCell(w, hidden) for w in widths for _ in ("forward", "backward"))
        self.film = nn.Linear(2 * hidden, out)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rows = list(self.pairs(x, y))
        for forward, backward in zip(self.cells[::2], self.cells[1::2]):
            ahead, behind = forward.run(rows), backward.run(rows[::-1])[::-1]
            rows = [torch.cat(pair) for pair in zip(ahead, behind)]
        hidden = self.cells[0].hidden
        return self.film(torch.cat([rows[-1][:hidden], rows[0][hidden:]]))


ENCODERS = {"set": SetEncoder, "lstm": LSTMEncoder}
"""``algorithm.mmaml.encoder``: the modulation networks by name."""


class ModulatedModel(nn.Module):
    """``net`` (the task network) and ``modulator`` (an encoder of :data:`ENCODERS`);
    ``forward(x, tau)`` runs ``net`` with FiLM parameters ``tau`` (none: the plain network)."""

    def __init__(
        self, net: nn.Module, encoder: str, hidden: int, classes: int, image_channels: int, inputs: int, standardize: bool = False
    ):
        super().__init__()
        self.net = net
        self.points, self.widths = _film_points(net)
        self.modulator = ENCODERS[encoder](inputs, classes, hidden, 2 * sum(self.widths), image_channels, standardize)

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
    """``encoder``: the modulation network, a name of :data:`ENCODERS`; ``hidden``: its width
    (the LSTM's, each way); ``standardize``: it reads regression targets standardised over the
    support set (:class:`PairEncoder`)."""

    name = "mmaml"
    modulates = True
    one_network = True
    hidden: int = 40
    encoder: str = "set"
    standardize: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.encoder not in ENCODERS:
            raise ValueError(f"mmaml's encoder is one of {', '.join(ENCODERS)}, not {self.encoder!r}")

    @classmethod
    def own_settings(cls, extra: dict) -> dict:
        return {
            "hidden": int(extra.get("hidden", 40)),
            "encoder": str(extra.get("encoder", "set")),
            "standardize": bool(extra.get("standardize", False)),
        }

    def meta_model(self, model: nn.Module) -> nn.Module:
        if getattr(model, "labels", None):
            raise ValueError("mmaml modulates one network: use model.heads=shared and model.share=all")
        head = getattr(model, "head", None)
        classes = head.out_features if self.classification and isinstance(head, nn.Linear) else 0
        first = list(model.body)[0]
        image_channels = first[0].in_channels if isinstance(first, nn.Sequential) else 0
        inputs = first.in_features if isinstance(first, nn.Linear) else 0
        if classes and self.standardize:
            raise ValueError("mmaml's standardize reads regression targets; class labels are read one-hot")
        return ModulatedModel(model, self.encoder, self.hidden, classes, image_channels, inputs, self.standardize)

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
