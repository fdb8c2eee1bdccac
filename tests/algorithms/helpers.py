"""Checks the algorithm tests share."""

from __future__ import annotations

import torch

from distmeta.algorithms import meta_grad
from distmeta.models import MLP, Conv4
from distmeta.tasks import TRAIN, EpisodeFamily, GlyphSource


def assert_matches_finite_differences(algo, model, params: dict, batch, directions: int = 3, h: float = 1e-5) -> None:
    """The summed meta-gradient against central differences of the summed loss, along random
    directions, to 1e-4 relative."""
    got = meta_grad(algo, model, params, {}, batch).grads
    gen = torch.Generator().manual_seed(1)
    for _ in range(directions):
        d = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}

        def loss(sign, d=d):
            return meta_grad(algo, model, {k: v + sign * h * d[k] for k, v in params.items()}, {}, batch).metrics["loss"].sum()

        fd = (loss(1) - loss(-1)) / (2 * h)
        analytic = sum((got[k] * d[k]).sum() for k in params)
        assert abs(fd - analytic) <= 1e-4 * abs(analytic), (fd, analytic)


def glyph_network_and_tasks(backbone: str, tasks: int = 1):
    """A small 5-way classifier (``mlp`` or ``conv4``) and ``tasks`` 5-way 1-shot glyph episodes."""
    torch.manual_seed(0)
    net = MLP(784, (16,), 5) if backbone == "mlp" else Conv4(1, 5, hidden=8, image_size=28)
    family = EpisodeFamily("glyphs", ways=5, shots=1, query=2).with_data(GlyphSource().load("val"))
    return net, family.sample(0, TRAIN, 0, list(range(tasks)))
