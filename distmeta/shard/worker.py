"""``ShardWorker``: computes the summed meta-gradient of its share of a meta-step's tasks.

A plain class (no ray import): :mod:`distmeta.shard.group` runs it in-process or wraps it with
``ray.remote`` at the edge. Tasks are sampled where they are computed, from ``(seed, step, index)``.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from distmeta.algorithms import Algorithm, meta_grad
from distmeta.models import ModelSpec, flatten, unflatten
from distmeta.shard.result import ShardResult
from distmeta.tasks import TRAIN, ClassImages, Family, TaskBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, as plain values (built from the config by :mod:`distmeta.builders`)."""

    seed: int
    family: Family
    model: ModelSpec
    algorithm: Algorithm
    threads: int = 1
    device: str = "cpu"
    compile: bool = False
    chunk_size: int = 0


class ShardWorker:
    """``data``: the training images this shard draws episodes from (image families; in a Ray
    actor, read from the object store without a copy); None for computed families (sine)."""

    def __init__(self, shard: int, spec: WorkerSpec, data: ClassImages | None = None):
        self.shard = shard
        self.spec = spec
        if spec.threads > 0:
            torch.set_num_threads(spec.threads)
        self.device = torch.device(spec.device)
        self.family = spec.family.with_data(data)
        self.model = spec.algorithm.meta_model(spec.model.build()).to(self.device)
        self.template = {k: p.detach() for k, p in self.model.named_parameters()}
        self.buffers = {k: b for k, b in self.model.named_buffers()}
        self._meta_grad = torch.compile(self._eager, dynamic=False) if spec.compile else self._eager

    @property
    def compiled(self) -> bool:
        """Whether the meta-gradient runs through ``torch.compile`` (False after a fallback)."""
        return self._meta_grad != self._eager  # bound methods compare equal, they are never identical

    def _eager(self, params, support_x, support_y, query_x, query_y):
        tasks = TaskBatch(support_x, support_y, query_x, query_y)
        out = meta_grad(self.spec.algorithm, self.model, params, self.buffers, tasks, self.spec.chunk_size)
        return out.grads, out.metrics

    def _run(self, params, tasks: TaskBatch):
        """The batched meta-gradient, through ``torch.compile`` when asked. The first call compiles
        (tens of seconds on CPU, cached on disk); if that fails the worker warns and stays eager."""
        if not self.compiled:
            return self._eager(params, *tasks.tensors())
        try:
            return self._meta_grad(params, *tasks.tensors())
        except Exception as exc:  # a missing C++ compiler or an unsupported op: eager is still right
            log.warning("shard %d: torch.compile failed (%s: %s); continuing eagerly", self.shard, type(exc).__name__, str(exc)[:300])
            self._meta_grad = self._eager
            return self._eager(params, *tasks.tensors())

    def info(self) -> dict[str, str]:
        """Where this worker runs (host, pid, device): recorded by the learner to show placement."""
        return {"host": socket.gethostname(), "pid": str(os.getpid()), "device": str(self.device)}

    def compute(self, step: int, weights: torch.Tensor | np.ndarray, version: int, indices: Sequence[int],
                data: ClassImages | None = None) -> ShardResult:
        """Meta-gradient sum over tasks ``indices`` of meta-step ``step`` at the flat ``weights``.
        ``data``: draw these tasks from other images than this worker's own (recomputing a lost
        class-partitioned shard elsewhere)."""
        start = time.perf_counter()
        # object-store arrays are read-only; the copy is tiny next to the step's compute
        flat = torch.from_numpy(np.array(weights)) if isinstance(weights, np.ndarray) else weights
        params = unflatten(flat.to(self.device), self.template)
        family = self.family if data is None else self.family.with_data(data)
        tasks = family.sample(self.spec.seed, TRAIN, step, indices).to(self.device)
        grads, metrics = self._run(params, tasks)
        return ShardResult(
            shard=self.shard,
            step=step,
            weights_version=version,
            grad_sum=flatten(grads).cpu(),
            task_count=len(indices),
            family_counts={self.family.name: len(indices)},
            metrics={k: v.sum().item() for k, v in metrics.items()},  # sums over tasks; the learner divides
            seconds=time.perf_counter() - start,
        )
