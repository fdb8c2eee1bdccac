"""Per-family heads on a shared body (``model.heads: per_family``): one network whose body every
family trains, with each family's own linear head (and so its own number of classes).

Algorithms and evaluation never see the multi-head module itself: they get a family's *view*,
an ordinary single-head network (``body`` + ``head``, the base network's own ``forward``) whose
parameters are the multi-head module's parameters (the same tensors, not copies). So every
algorithm works unchanged, and :func:`view_names` maps the view's parameter names back.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class MultiHead(nn.Module):
    """``body`` (shared) and ``heads`` (one per family label). ``net`` is a single-head network of
    the same architecture (MLP, Conv4) whose ``forward`` the views use."""

    def __init__(self, net: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        if not heads:
            raise ValueError("MultiHead needs at least one head")
        self.body = net.body
        self.heads = nn.ModuleDict(heads)
        net.head = next(iter(heads.values()))  # the template's own head would be an orphan parameter set
        self._template = (net,)  # a tuple: not registered, so its modules are not counted twice

    @property
    def labels(self) -> list[str]:
        return list(self.heads.keys())

    def view(self, label: str) -> nn.Module:
        """Family ``label``'s network: the template with this body and ``heads[label]``."""
        if label not in self.heads:
            raise KeyError(f"no head for family '{label}'; heads: {', '.join(self.heads)}")
        net = copy.copy(self._template[0])
        net._modules = {**net._modules, "body": self.body, "head": self.heads[label]}
        return net

    def forward(self, x: torch.Tensor, family: str | None = None) -> torch.Tensor:
        if family is None:
            if len(self.heads) != 1:
                raise ValueError(f"this network has one head per family ({', '.join(self.heads)}): pass family=")
            family = self.labels[0]
        return self.view(family)(x)


def family_view(model: nn.Module, label: str) -> nn.Module:
    """Family ``label``'s single-head network when ``model`` (a :class:`MultiHead`, or a wrapper
    such as ``MetaSGDModel`` that offers ``labels`` and ``view``) has per-family heads; else
    ``model`` itself."""
    return model.view(label) if getattr(model, "labels", None) else model


def view_names(full: nn.Module, view: nn.Module) -> dict[str, str]:
    """For each parameter and buffer of ``view``, the name the same tensor has in ``full``."""
    names = {id(t): n for n, t in (*full.named_parameters(), *full.named_buffers())}
    out = {}
    for n, t in (*view.named_parameters(), *view.named_buffers()):
        if id(t) not in names:
            raise ValueError(f"'{n}' of the view is not a tensor of the full model")
        out[n] = names[id(t)]
    return out
