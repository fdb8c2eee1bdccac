"""Small networks written so ``torch.func.functional_call`` can run them with any parameter dict."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


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
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)
        self.in_features, self.hidden, self.out_features = in_features, tuple(hidden), out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.flatten(1)
        return self.head(self.body(x))
