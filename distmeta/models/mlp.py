"""Small networks written so ``torch.func.functional_call`` can run them with any parameter dict."""
from __future__ import annotations

from typing import Sequence

from torch import nn


class MLP(nn.Sequential):
    """ReLU multilayer perceptron ``in -> hidden... -> out`` (the MAML sine network is 1-40-40-1)."""

    def __init__(self, in_features: int = 1, hidden: Sequence[int] = (40, 40), out_features: int = 1):
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)
        self.in_features, self.hidden, self.out_features = in_features, tuple(hidden), out_features
