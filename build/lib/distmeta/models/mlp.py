"""Small networks written so ``torch.func.functional_call`` can run them with any parameter dict."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FlatBody(nn.Sequential):
    """The hidden layers; inputs with more than one trailing dimension (images) are flattened
    here, so the body alone (ANIL's embedding) takes what the whole network takes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1) if x.dim() > 2 else x)


class MLP(nn.Module):
    """ReLU multilayer perceptron ``in -> hidden... -> out`` (the MAML sine network is 1-40-40-1).

    ``body`` is the hidden layers (inputs -> features), ``head`` the final linear layer: ANIL
    adapts only the head. Inputs with more than one trailing dimension (images) are flattened.
    """

    def __init__(self, in_features: int = 1, hidden: Sequence[int] = (40, 40), out_features: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = FlatBody(*layers)
        self.head = nn.Linear(width, out_features)
        self.in_features, self.hidden, self.out_features = in_features, tuple(hidden), out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
