"""``ShardWorker``: computes the summed meta-gradient of its share of a meta-step's tasks.

A plain class (no ray import): :mod:`distmeta.shard.group` runs it in-process or wraps it with
``ray.remote`` at the edge. Tasks are sampled where they are computed, from ``(seed, step, index)``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np
import torch

from distmeta.algorithms import Mode, meta_grad, meta_grad_grouped, meta_grad_loop
from distmeta.models import batch_statistics, family_view, running_layers, view_names
from distmeta.shard import wire
from distmeta.shard.allocator import retain_freed_memory
from distmeta.shard.channel import ChannelServer
from distmeta.shard.fusion import dense, fusion_groups
from distmeta.shard.kept import Kept
from distmeta.shard.result import ShardResult
from distmeta.shard.spec import ShardData, WorkerSpec
from distmeta.shard.system import ProcessProbe
from distmeta.tasks import TRAIN, ClassImages, TaskData, TaskFamily

log = logging.getLogger(__name__)


def _device(name: str, shard: int) -> torch.device:
    """``cuda`` means the GPU Ray assigned this actor (Ray sets ``CUDA_VISIBLE_DEVICES``, so it is
    ``cuda:0`` here). Ray can also advertise GPUs that CUDA cannot see (``ray start --num-gpus``
    on a host without them): then the shard computes on the CPU, and says so."""
    if name == "cuda" and not torch.cuda.is_available():
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "(none)")
        log.warning("shard %d: Ray assigned GPUs %s but CUDA is not available in this process; computing on the CPU", shard, gpus)
        return torch.device("cpu")
    return torch.device(name)


class ShardWorker:
    """``data``: per data unit, the training images this shard draws episodes from (in a Ray actor
    each is an object-store reference resolved without a copy); None for computed families and
    for units this shard does not own. Empty for a run without images."""

    def __init__(self, shard: int, spec: WorkerSpec, *data: ClassImages | None):
        self.shard = shard
        self.spec = spec
        if spec.threads > 0:
            torch.set_num_threads(spec.threads)
        if spec.retain_freed_memory:
            retain_freed_memory()
        self.device = _device(spec.device, shard)
        self.probe = ProcessProbe(self.device)
        self.units = self._attach(data)
        self.model = spec.algorithm.meta_model(spec.model.build()).to(self.device)
        self.template = {k: p.detach() for k, p in self.model.named_parameters()}
        self.buffers = {k: b for k, b in self.model.named_buffers()}
        self.running_norms = bool(running_layers(self.model))
        # per-family heads: each family computes on its single-head view; names map back
        self.views = {
            f.name: (view, view_names(self.model, view))
            for f in spec.families
            if (view := family_view(self.model, f.name)) is not self.model
        }
        # static shapes: faster than dynamic=None for a fixed task count (docs/performance.md); a
        # mixture's changing per-family counts go in power-of-two chunks
        # (_compiled_in_powers_of_two), so at most a handful of shapes ever compile. The per-task
        # loop runs eagerly: compiling would unroll it once per task count.
        self._meta_grad = torch.compile(self._eager, dynamic=False) if spec.compile and spec.batching == "vmap" else self._eager
        self._lock = threading.Lock()  # a Ray call and the channel's thread never compute at once
        self._channel: ChannelServer | None = None
        self.kept = Kept()
        algo = spec.algorithm
        self.fuses = (
            spec.batching == "vmap" and not spec.compile and algo.outer_epochs == 1 and not algo.collects and dense(self.model)
        )

    def open_channel(self) -> str:
        """Serve :meth:`compute` on a Unix socket too (:mod:`distmeta.shard.channel`); returns its
        path. The learner on this node uses it instead of Ray calls."""
        if self._channel is None:
            threads = self.spec.threads
            self._channel = ChannelServer(
                lambda step, weights, version, indices, diagnostics, slot, epoch=0, origin=None: self.compute(
                    step, weights, version, indices, slot=slot, diagnostics=diagnostics, epoch=epoch, origin=origin
                ),
                on_thread=(lambda: torch.set_num_threads(threads)) if threads > 0 else (lambda: None),
            )
        return self._channel.path

    def _attach(self, data: ShardData) -> tuple[TaskFamily, ...]:
        """Per data unit, its family with the unit's images; a unit whose images this shard lacks
        cannot sample."""
        per_family = self.spec.partitions
        data = data or (None,) * (len(self.spec.families) * per_family)
        return tuple(
            f if d is None else f.with_data(d) for f, d in zip((f for f in self.spec.families for _ in range(per_family)), data)
        )

    def families_with_images(self) -> list[str]:
        """The families some of whose training images this worker holds (shows who loaded what)."""
        held = (u.name for u in self.units if getattr(u, "data", None) is not None)
        return list(dict.fromkeys(held))

    @property
    def compiled(self) -> bool:
        """Whether the meta-gradient runs through ``torch.compile`` (False after a fallback)."""
        return self._meta_grad != self._eager  # bound methods compare equal, they are never identical

    def _eager(self, model, params, buffers, task_type, *tensors):
        """The vmapped meta-gradient (what ``torch.compile`` compiles: tensors in, tensors out)."""
        with self._autocast():
            out = meta_grad(self.spec.algorithm, model, params, buffers, task_type.from_tensors(tensors), self.spec.chunk_size)
        return {k: g.float() for k, g in out.grads.items()}, {k: v.float() for k, v in out.metrics.items()}

    def _loop(self, net: tuple, tasks: TaskData, diagnostics: bool):
        """One task at a time; steps the learner does not log skip the metrics that cost compute
        of their own (vmapped, the pre-adaptation forward is one shared-weight batch and stays)."""
        with self._autocast():
            out = meta_grad_loop(self.spec.algorithm, *net, tasks, Mode(diagnostics=diagnostics))
        return {k: g.float() for k, g in out.grads.items()}, {k: v.float() for k, v in out.metrics.items()}

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.spec.precision == "bf16-mixed")

    def _run(self, net: tuple, tasks: TaskData, diagnostics: bool):
        """The meta-gradient of ``net`` = (model, params, buffers): per task, or batched through
        ``torch.compile`` when asked. The first compiled call compiles (tens of seconds on CPU,
        cached on disk); if that fails the worker warns and stays eager."""
        if self.spec.batching == "loop":
            return self._loop(net, tasks, diagnostics)
        if not self.compiled:
            return self._eager(*net, type(tasks), *tasks.tensors())
        try:
            if len(self.spec.mixture.names) > 1 or self.spec.partitions > 1:  # counts change by step
                return self._compiled_in_powers_of_two(net, tasks)
            return self._meta_grad(*net, type(tasks), *tasks.tensors())
        except Exception as exc:  # a missing C++ compiler or an unsupported op: eager is still right
            log.warning(
                "shard %d: torch.compile failed (%s: %s); continuing eagerly", self.shard, type(exc).__name__, str(exc)[:300]
            )
            self._meta_grad = self._eager
            return self._eager(*net, type(tasks), *tasks.tensors())

    def _net(self, label: str, params) -> tuple[tuple, dict[str, str] | None]:
        """``(model, params, buffers)`` family ``label`` computes with: with per-family heads its
        view (body + its head) and the map of the view's names to the full model's, else the model."""
        if label not in self.views:
            return (self.model, params, self.buffers), None
        model, names = self.views[label]
        sub = {v: params[n] for v, n in names.items() if n in params}
        bufs = {v: self.buffers[n] for v, n in names.items() if n in self.buffers}
        return (model, sub, bufs), names

    def _family_grad(self, label: str, params, tasks: TaskData, diagnostics: bool, data=None):
        """The meta-gradient of ``label``'s tasks over the full parameters. With per-family heads it
        is computed on the family's view and is zero for the other heads. ``data``: what
        ``algorithm.prepare`` made of the tasks (default: made now, at ``params``)."""
        net, names = self._net(label, params)
        if data is None:
            data = self.spec.algorithm.prepare(*net, tasks)  # meta-RL: rollouts here
        g, m = self._run(net, data, diagnostics)
        if names is None:
            return g, m
        got = {names[v]: t for v, t in g.items()}
        return {n: got.get(n, torch.zeros_like(p)) for n, p in params.items()}, m

    def _fusable(self, f: int) -> bool:
        """Whether family ``f`` may share a call with others: eager vmap, the whole dense network, nothing kept between epochs."""
        return self.fuses and self.spec.families[f].name not in self.views

    def _fused_grad(self, params, parts: list[TaskData]):
        """Several families' tasks on the whole network in one vmapped call; per family ``(gradients, per-task metrics)``."""
        counts = [len(t) for t in parts]
        groups = torch.repeat_interleave(torch.arange(len(parts), device=self.device), torch.tensor(counts, device=self.device))
        tasks, algo = type(parts[0]).cat(parts), self.spec.algorithm
        with self._autocast():
            grads, metrics = meta_grad_grouped(
                algo, self.model, params, self.buffers, tasks, groups, len(parts), self.spec.chunk_size
            )
        split = {k: v.float().split(counts) for k, v in metrics.items()}
        return [({k: g.float() for k, g in grads[i].items()}, {k: v[i] for k, v in split.items()}) for i in range(len(parts))]

    def _kept(self, key: tuple, params, tasks: TaskData, epoch: int, origin):
        """The prepared data a later epoch computes on: kept from epoch 0, or (lost with a
        restarted actor, or another actor's shard) prepared again at ``origin``; None with one epoch."""
        if self.spec.algorithm.outer_epochs == 1:
            return None
        data = self.kept.get(key) if epoch > 0 else None
        if data is None:
            if epoch > 0:
                if origin is None:
                    raise ValueError(f"epoch {epoch} of step {key[0]} needs the step's first weights (origin)")
                log.info(
                    "shard %d: step %d's collected data is not here at epoch %d; collecting it again", self.shard, key[0], epoch
                )
                params = wire.weights_in(origin, self.template, self.device)
            data = self.spec.algorithm.prepare(*self._net(key[2], params)[0], tasks)
            self.kept.put(key, data)
        return data

    def _norm_stats(self, label: str, params, tasks: TaskData) -> np.ndarray:
        """The sum over ``tasks`` of each task's batch statistics at the meta-parameters (running
        norms; the views share the body's norms, in the same order)."""
        (model, p, b), _ = self._net(label, params)
        batches = self.spec.algorithm.norm_batches
        total = sum(batch_statistics(model, p, b, batches(tasks.unbatched(i))) for i in range(len(tasks)))
        return total.double().cpu().numpy()

    def _compiled_in_powers_of_two(self, net: tuple, tasks: TaskData):
        """A mixture's per-family task counts (and a class-partitioned shard's) change every step, and each new count would
        compile anew: chunks of 1, 2, 4, 8, ... tasks (13 = 8 + 4 + 1) compile once each; gradients add up."""
        grads, parts, start, n = None, [], 0, len(tasks)
        while start < n:
            size = 1 << ((n - start).bit_length() - 1)
            chunk = tasks.slice(start, start + size)
            g, m = self._meta_grad(*net, type(chunk), *chunk.tensors())
            grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
            parts.append(m)
            start += size
        return grads, {k: torch.cat([m[k] for m in parts]) for k in parts[0]}

    def info(self) -> dict[str, str]:
        """Where this worker runs (host, pid, device; in a Ray actor also the node id and the GPU
        ids Ray assigned): recorded by the learner to show placement."""
        out = {"host": socket.gethostname(), "pid": str(os.getpid()), "device": str(self.device)}
        ray = sys.modules.get("ray")  # in a Ray worker process ray is imported; the plain class never imports it
        if ray is not None and ray.is_initialized():
            out["node"] = ray.get_runtime_context().get_node_id()
            out["ip"] = ray.util.get_node_ip_address()
            out["gpus"] = ",".join(str(g) for g in ray.get_gpu_ids())
        return out

    def compute(
        self,
        step: int,
        weights: torch.Tensor | np.ndarray,
        version: int,
        indices: Sequence[int],
        *data: ClassImages | None,
        slot: int | None = None,
        diagnostics: bool = True,
        epoch: int = 0,
        origin: torch.Tensor | np.ndarray | None = None,
    ) -> ShardResult:
        """Per family, the meta-gradient sum over tasks ``indices`` of meta-step ``step`` at the
        flat ``weights``. ``data``: draw these tasks from other images than this worker's own
        (recomputing a lost shard that owned other classes or families elsewhere).
        ``slot``: the plan slot this answers (default this worker's own shard). ``diagnostics=False``:
        the per-task loop may leave out the metrics that cost compute. ``epoch``: for an algorithm
        of several outer epochs, which one (:class:`Kept`); ``origin``: the step's epoch-0 weights,
        sent with every later epoch."""
        with self._lock:
            slot = self.shard if slot is None else slot
            return self._compute(step, weights, version, indices, data, slot, diagnostics, epoch, origin)

    def _compute(self, step, weights, version, indices, data, slot, diagnostics, epoch=0, origin=None) -> ShardResult:
        start = time.perf_counter()
        params = wire.weights_in(weights, self.template, self.device)
        units = self._attach(data) if data else self.units
        seed, parts = self.spec.seed, self.spec.partitions
        by_family: dict[int, list[TaskData]] = {}
        for u, idx in self.spec.mixture.group(seed, TRAIN, step, indices, parts).items():
            by_family.setdefault(u // parts, []).append(units[u].sample(seed, TRAIN, step, idx))
        sampled = time.perf_counter()
        tasks_of = {f: type(b[0]).cat(b).to(self.device) for f, b in by_family.items()}
        grads, counts, metrics, norm = {}, {}, {}, None
        for fams in fusion_groups(tasks_of, self._fusable, sum(w.numel() for w in params.values())):
            if len(fams) > 1:
                outs = self._fused_grad(params, [tasks_of[f] for f in fams])
            else:
                name, tasks = self.spec.families[fams[0]].name, tasks_of[fams[0]]
                kept = self._kept(Kept.key(step, slot, name, indices), params, tasks, epoch, origin)
                outs = [self._family_grad(name, params, tasks, diagnostics, kept)]
            for f, (g, m) in zip(fams, outs):
                family, tasks = self.spec.families[f], tasks_of[f]
                grads[family.name] = wire.grads_out(g)
                counts[family.name] = len(tasks)
                metrics[family.name] = {k: v.sum().item() for k, v in m.items()}  # sums; the learner divides
                if self.running_norms:
                    stats = self._norm_stats(family.name, params, tasks)
                    norm = stats if norm is None else norm + stats
        return ShardResult(
            shard=slot,
            step=step,
            weights_version=version,
            family_grads=grads,
            family_counts=counts,
            family_metrics=metrics,
            seconds=time.perf_counter() - start,
            sample_seconds=sampled - start,
            norm_stats=norm,
            system=self.probe.sample() if diagnostics and slot == self.shard else None,
        )
