"""Meta-learning algorithms as pure torch.func code (no ray/mlflow/lightning/omegaconf)."""

from __future__ import annotations

from distmeta.algorithms.anil import ANIL
from distmeta.algorithms.base import LOSSES, Algorithm, Params, accuracy, cross_entropy, forward, mse
from distmeta.algorithms.batching import MetaGradient, meta_grad, meta_grad_loop
from distmeta.algorithms.gradient import MAML, GradientAdaptation, InnerLoop
from distmeta.algorithms.metasgd import MetaSGD, MetaSGDModel
from distmeta.algorithms.protonet import ProtoNet
from distmeta.algorithms.reptile import Reptile

ALGORITHMS = ("maml", "fomaml", "reptile", "anil", "metasgd", "protonet")


def build(
    name: str,
    *,
    loss: str = "mse",
    steps: int = 1,
    lr: float = 0.01,
    first_order: bool = False,
    checkpoint: bool = False,
    ways: int = 5,
    reptile_inner_batch: int = 0,
    reptile_use_query: bool = True,
) -> Algorithm:
    """Algorithm ``name`` with plain settings. ``fomaml`` is MAML with ``first_order`` forced;
    Reptile is first order by definition."""
    inner = InnerLoop(steps=steps, lr=lr, first_order=first_order or name == "fomaml", checkpoint=checkpoint)
    if name in ("maml", "fomaml"):
        return MAML(loss=loss, inner=inner)
    if name == "anil":
        return ANIL(loss=loss, inner=inner)
    if name == "metasgd":
        return MetaSGD(loss=loss, inner=inner)
    if name == "reptile":
        return Reptile(
            loss=loss,
            inner=InnerLoop(steps=steps, lr=lr, first_order=True),
            inner_batch=reptile_inner_batch,
            use_query=reptile_use_query,
        )
    if name == "protonet":
        return ProtoNet(loss=loss, ways=ways)
    raise ValueError(f"unknown algorithm '{name}'; known: {', '.join(ALGORITHMS)}")


__all__ = [
    "ALGORITHMS",
    "ANIL",
    "Algorithm",
    "GradientAdaptation",
    "InnerLoop",
    "LOSSES",
    "MAML",
    "MetaGradient",
    "MetaSGD",
    "MetaSGDModel",
    "Params",
    "ProtoNet",
    "Reptile",
    "accuracy",
    "build",
    "cross_entropy",
    "forward",
    "meta_grad",
    "meta_grad_loop",
    "mse",
]
