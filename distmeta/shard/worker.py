"""``ShardWorker``: computes the summed meta-gradient of its share of a meta-step's tasks.

A plain class (no ray import): :mod:`distmeta.shard.group` runs it in-process or wraps it with
``ray.remote`` at the edge. Tasks are sampled where they are computed, from ``(seed, step, index)``.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from distmeta.algorithms import InnerLoop, meta_grad
from distmeta.models import build, flatten, unflatten
from distmeta.shard.result import ShardResult
from distmeta.tasks import TRAIN, SineFamily


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, as plain values (built from the config by :mod:`distmeta.builders`)."""

    seed: int
    family: SineFamily
    model_name: str
    hidden: tuple[int, ...]
    inner: InnerLoop
    threads: int = 1
    device: str = "cpu"


class ShardWorker:
    def __init__(self, shard: int, spec: WorkerSpec):
        self.shard = shard
        self.spec = spec
        if spec.threads > 0:
            torch.set_num_threads(spec.threads)
        self.device = torch.device(spec.device)
        self.model = build(spec.model_name, hidden=spec.hidden).to(self.device)
        self.template = {k: p.detach() for k, p in self.model.named_parameters()}
        self.buffers = {k: b for k, b in self.model.named_buffers()}

    def info(self) -> dict[str, str]:
        """Where this worker runs (host, pid, device): recorded by the learner to show placement."""
        return {"host": socket.gethostname(), "pid": str(os.getpid()), "device": str(self.device)}

    def compute(self, step: int, weights: torch.Tensor, version: int, indices: Sequence[int]) -> ShardResult:
        """Meta-gradient sum over tasks ``indices`` of meta-step ``step`` at the flat ``weights``."""
        start = time.perf_counter()
        params = unflatten(weights.to(self.device), self.template)
        tasks = self.spec.family.sample(self.spec.seed, TRAIN, step, indices).to(self.device)
        out = meta_grad(self.model, params, self.buffers, tasks, self.spec.inner)
        losses = out.losses.sum().item()
        return ShardResult(
            shard=self.shard,
            step=step,
            weights_version=version,
            grad_sum=flatten(out.grads).cpu(),
            task_count=len(indices),
            family_counts={self.spec.family.name: len(indices)},
            metrics={"loss": losses, "query_mse": losses, "preadapt_mse": out.preadapt.sum().item()},
            seconds=time.perf_counter() - start,
        )
