"""Floating-point operations of one task's meta-gradient, counted by torch's ``FlopCounterMode``
on the meta device: shapes only, nothing is computed, so a second-order ResNet-12 task at 84x84
counts in seconds on a CPU. :mod:`distmeta.bench.projection` scales a GPU rate measured on one
workload to a workload that was not measured (ResNet-12 5w5s from 5w1s) by this count.
"""

from __future__ import annotations

from torch.utils.flop_counter import FlopCounterMode

from distmeta.algorithms import Mode, build, meta_grad_loop
from distmeta.bench.synthetic import class_images
from distmeta.models import ModelSpec
from distmeta.tasks import TRAIN, EpisodeFamily


def task_flops(
    spec: ModelSpec, ways: int = 5, shots: int = 1, query: int = 15, inner_steps: int = 1, first_order: bool = False
) -> float:
    """FLOPs of one ``ways``-way ``shots``-shot MAML task's meta-gradient on ``spec`` (the inner
    loop on the support set, the query loss after it and its gradient; no diagnostics)."""
    channels, side = spec.input_shape[0], spec.input_shape[-1]
    family = EpisodeFamily("synthetic", ways=ways, shots=shots, query=query)
    task = family.with_data(class_images(ways, shots + query, side, channels)).sample(0, TRAIN, 0, range(1)).to("meta")
    model = spec.build().to("meta")
    algo = build("maml", loss="cross_entropy", steps=inner_steps, lr=0.01, first_order=first_order, ways=ways)
    params = {k: p.detach() for k, p in model.named_parameters()}
    with FlopCounterMode(display=False) as counter:
        meta_grad_loop(algo, model, params, dict(model.named_buffers()), task, mode=Mode(diagnostics=False))
    return float(counter.get_total_flops())


def resnet12_84(ways: int = 5) -> ModelSpec:
    """ResNet-12 at its default widths on 84x84 RGB (mini-ImageNet's shape), as the GPU check runs it."""
    return ModelSpec("resnet12", (3, 84, 84), ways)


__all__ = ["resnet12_84", "task_flops"]
