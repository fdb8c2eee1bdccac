"""ANIL: Raghu, Raghu, Bengio & Vinyals, "Rapid Learning or Feature Reuse? Towards Understanding
the Effectiveness of MAML", ICLR 2020.

Only the head (the final linear layer, ``head.*``) adapts in the inner loop; the body is a
meta-parameter the inner loop reads. The body's features of a task's support and query sets are
computed once and the head adapts on them, so an inner step costs a linear layer, not the network.
The body still gets a second-order meta-gradient: the head's inner gradients depend on the
features. The model must expose ``body`` (inputs -> features) and ``head`` (``nn.Linear``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from distmeta.algorithms.base import Params, forward_part
from distmeta.algorithms.gradient import GradientAdaptation

HEAD = "head."


@dataclass(frozen=True)
class ANIL(GradientAdaptation):
    name = "anil"

    def meta_model(self, model: nn.Module) -> nn.Module:
        # per-family heads: every family's view must be a body with a linear head
        for net in [model.view(label) for label in getattr(model, "labels", None) or []] or [model]:
            if not isinstance(getattr(net, "head", None), nn.Linear) or not hasattr(net, "body"):
                raise ValueError(f"ANIL needs a model with a 'body' and a linear 'head'; {type(net).__name__} has none")
        return model

    def split(self, params: Params) -> tuple[Params, Params]:
        return (
            {k: v for k, v in params.items() if k.startswith(HEAD)},
            {k: v for k, v in params.items() if not k.startswith(HEAD)},
        )

    def embed(self, model, slow, buffers, x) -> torch.Tensor:
        return forward_part(model, "body", slow, buffers, x)

    def predict(self, model, fast, slow, buffers, z) -> torch.Tensor:
        return F.linear(z, fast["head.weight"], fast["head.bias"])
