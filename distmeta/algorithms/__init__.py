"""Meta-learning algorithms as pure torch.func code (no ray/mlflow/lightning/omegaconf)."""
from __future__ import annotations

from distmeta.algorithms.maml import InnerLoop, MetaGradient, adapt, forward, meta_grad, meta_grad_loop, mse, task_loss

FIRST_ORDER = {"maml": False, "fomaml": True}


def inner_loop(name: str, *, steps: int, lr: float) -> InnerLoop:
    """The inner-loop settings of algorithm ``name`` (``maml`` or ``fomaml``)."""
    if name not in FIRST_ORDER:
        raise ValueError(f"unknown algorithm '{name}'; known: {', '.join(FIRST_ORDER)}")
    return InnerLoop(steps=steps, lr=lr, first_order=FIRST_ORDER[name])


__all__ = ["InnerLoop", "MetaGradient", "adapt", "forward", "inner_loop", "meta_grad", "meta_grad_loop", "mse", "task_loss"]
