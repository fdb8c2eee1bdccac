"""Per-family parts of one network: heads on a shared body (``model.heads: per_family``), or
whole networks (``model.share: none``, Multi-MAML's one model per family, trained in one run).

Algorithms and evaluation never see the per-family module itself: they get a family's *view*,
an ordinary single-head network whose parameters are the per-family module's parameters (the
same tensors, not copies). So every algorithm works unchanged, and :func:`view_names` maps the
view's parameter names back.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class PerFamily(nn.Module):
    """A network with a part of its own per family label; ``view(label)`` is that family's network."""

    def members(self) -> nn.ModuleDict:
        """The per-family parts, by label."""
        raise NotImplementedError

    @property
    def labels(self) -> list[str]:
        return list(self.members().keys())

    def view(self, label: str) -> nn.Module:
        raise NotImplementedError

    def _known(self, label: str) -> None:
        if label not in self.members():
            raise KeyError(f"no network part for family '{label}'; families: {', '.join(self.labels)}")

    def forward(self, x: torch.Tensor, family: str | None = None) -> torch.Tensor:
        if family is None:
            if len(self.labels) != 1:
                raise ValueError(f"this network has a part per family ({', '.join(self.labels)}): pass family=")
            family = self.labels[0]
        return self.view(family)(x)


class Separate(PerFamily):
    """``model.share: none``: a whole network per family label, sharing nothing; a family's view is
    its network."""

    def __init__(self, nets: dict[str, nn.Module]):
        super().__init__()
        if not nets:
            raise ValueError("Separate needs at least one network")
        self.nets = nn.ModuleDict(nets)

    def members(self) -> nn.ModuleDict:
        return self.nets

    def view(self, label: str) -> nn.Module:
        self._known(label)
        return self.nets[label]


class MultiHead(PerFamily):
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

    def members(self) -> nn.ModuleDict:
        return self.heads

    def view(self, label: str) -> nn.Module:
        """Family ``label``'s network: the template with this body and ``heads[label]``."""
        self._known(label)
        net = copy.copy(self._template[0])
        net._modules = {**net._modules, "body": self.body, "head": self.heads[label]}
        return net


def family_view(model: nn.Module, label: str) -> nn.Module:
    """Family ``label``'s network when ``model`` (a :class:`PerFamily`, or a wrapper
    such as ``MetaSGDModel`` that offers ``labels`` and ``view``) has per-family parts; else
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
