"""All-reduce mode's shard worker: a :class:`ShardWorker` that holds a replica of the
meta-parameters, the meta-optimizer and the norms' running estimates, and updates it itself.

Each step the learner sends only the step, the plan and the schedule's learning rate. Every
replica computes its shard's per-family gradient sums, the group all-reduces them with the task
counts and the norms' statistics (:mod:`distmeta.shard.collective`), and every replica applies
the same combination (:func:`distmeta.shard.aggregate.combine`: family weighting, non-finite
check), clipping and Adam step as the learner does in learner mode. Identical inputs, identical
code: the replicas stay identical (the learner compares their digests). The learner receives each
shard's metrics every step and rank 0's full state when it needs the weights (validation,
checkpoints, the end).

Plain Python like the worker: the group (:mod:`distmeta.shard.allreduce_group`) applies Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from distmeta.errors import NonFiniteGradientError
from distmeta.models import flatten, unflatten, update_running
from distmeta.shard import wire
from distmeta.shard.aggregate import Combined, combine
from distmeta.shard.collective import Collective, StoreHost, resolve_backend
from distmeta.shard.result import ShardResult
from distmeta.shard.spec import ReplicaSpec, WorkerSpec
from distmeta.shard.worker import ShardWorker

log = logging.getLogger(__name__)


@dataclass
class ReplicaState:
    """A replica's whole state after ``steps`` applied meta-steps, on the CPU: flat weights,
    buffers (running estimates), the optimizer's per-parameter state (by parameter index)."""

    steps: int
    weights: np.ndarray
    buffers: dict[str, np.ndarray]
    optimizer: dict


@dataclass(frozen=True)
class StepReply:
    """One replica's answer for a step: its shards' metrics (results without gradients: its own
    shard's, then those of actors gone for good that it computes too), what
    the combination measured, whether the update was skipped (non-finite, ``on_nonfinite: skip``),
    the seconds spent reducing and applying, the digest of its weights after the step (when
    asked), and (rank 0, when asked) its state."""

    results: tuple[ShardResult, ...]
    combined: Combined
    skipped: bool
    reduce_seconds: float
    apply_seconds: float
    digest: str
    state: ReplicaState | None = None


def capture(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> ReplicaState:
    """``model``'s and ``optimizer``'s state after ``steps`` meta-steps, on the CPU (a replica's,
    or the learner's own in the same form)."""
    return ReplicaState(
        steps=steps,
        weights=flatten({k: p.detach() for k, p in model.named_parameters()}).cpu().numpy(),
        buffers={k: b.detach().cpu().numpy().copy() for k, b in model.named_buffers()},
        optimizer={k: {n: v.detach().cpu().clone() if torch.is_tensor(v) else v for n, v in st.items()}
                   for k, st in optimizer.state_dict()["state"].items()},
    )  # fmt: skip


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: ReplicaState) -> None:
    """Make ``model`` and ``optimizer`` hold ``state``; the optimizer keeps its own parameter
    groups (the learning rate is the learner's schedule's). ``load_state_dict`` moves the moments
    to the parameters' device."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in unflatten(torch.from_numpy(np.array(state.weights)), params).items():
            params[name].copy_(value)
        buffers = dict(model.named_buffers())
        for name, value in state.buffers.items():
            buffers[name].copy_(torch.from_numpy(np.array(value)))
    optimizer.load_state_dict({"state": state.optimizer, "param_groups": optimizer.state_dict()["param_groups"]})


def digest(weights: torch.Tensor) -> str:
    """A short hash of a flat weight vector's bytes (replicas compare them)."""
    return hashlib.blake2b(weights.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()


class ReplicaWorker(ShardWorker):
    """Shard ``shard`` (its rank in the collective) with a replica of the meta-model."""

    def __init__(self, shard: int, spec: WorkerSpec, *data):
        super().__init__(shard, spec, *data)
        if spec.replica is None:
            raise ValueError("a replica worker needs WorkerSpec.replica")
        self.replica: ReplicaSpec = spec.replica
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.replica.meta_lr, fused=True)  # as the learner's
        self.steps = 0
        self._families = sorted(f.name for f in spec.families)
        self._store: StoreHost | None = None
        self._collective: Collective | None = None
        self._before: ReplicaState | None = None  # the state before the last applied step (groups of 2+)
        self.reduced = 0  # payload bytes handed to the collective (distmeta bench --scaling)
        self.rank = shard  # in the collective: the shard, until actors gone for good shrink the group

    # -- the group ---------------------------------------------------------------------------------
    def host_store(self) -> int:
        """Rank 0: start the rendezvous store; returns its port."""
        self._store = StoreHost(self.replica.timeout_s)
        return self._store.port

    def join(self, host: str, port: int, world: int, generation: int, me: str, rank: int) -> str:
        """Join generation ``generation`` of the collective as ``rank`` (blocks until every rank
        has); returns the backend this rank resolved ``cluster.collective`` to."""
        self.rank = rank
        own = self._store.store if self._store is not None and rank == 0 else None
        backend = resolve_backend(self.replica.collective, self.device, self.replica.own_gpu)
        if self._collective is not None:  # a new generation replaces the last
            self._collective.close()
        self._collective = Collective(host, port, rank, world, generation, self.replica.timeout_s, me, own, backend,
                                      self.device)  # fmt: skip
        return backend

    # -- state -------------------------------------------------------------------------------------
    def load_state(self, state: ReplicaState) -> str:
        """Become ``state``; returns the digest of the weights."""
        restore(self.model, self.optimizer, state)
        self.steps = state.steps
        return self.weights_digest()

    def state(self) -> ReplicaState:
        return capture(self.model, self.optimizer, self.steps)

    def rewind(self, step: int) -> str:
        """After a failed attempt at meta-step ``step``: hold the state before it again. A
        replica whose reduction completed although another's did not has applied the step; it
        goes back to its copy from before. Returns the digest of the weights."""
        if self.steps == step + 1 and self._before is not None and self._before.steps == step:
            return self.load_state(self._before)
        if self.steps != step:
            raise RuntimeError(f"replica {self.shard} has applied {self.steps} meta-steps and cannot go back to step {step}")
        return self.weights_digest()

    def weights_digest(self) -> str:
        return digest(self._flat())

    def reduced_bytes(self) -> int:
        return self.reduced

    def _flat(self) -> torch.Tensor:
        return flatten({k: p.detach() for k, p in self.model.named_parameters()})

    # -- one step ----------------------------------------------------------------------------------
    def replicated_step(
        self, step: int, indices: Sequence[int], lr: float, diagnostics: bool = True, sync: bool = False,
        check: bool = False, extra: Sequence[tuple[int, Sequence[int], int]] = (), *data,
    ) -> StepReply:  # fmt: skip
        """Compute this shard's tasks of ``step``, all-reduce, apply. ``sync``: rank 0 also
        returns its state; ``check``: every rank returns the digest of its weights. ``extra``:
        ``(slot, indices, units)`` of shards whose actors are gone for good, computed here too,
        each from the next ``units`` of ``data`` (its own images; none: this shard's serve)."""
        if self._collective is None:
            raise RuntimeError(f"replica {self.shard} has not joined its collective group")
        if step != self.steps:
            raise RuntimeError(f"replica {self.shard} has applied {self.steps} meta-steps and was asked for step {step}")
        weights = wire.as_array(self._flat().cpu())
        results, at = [self.compute(step, weights, step, indices, diagnostics=diagnostics)], 0
        for slot, more, units in extra:
            results.append(self.compute(step, weights, step, more, *data[at : at + units], slot=slot, diagnostics=diagnostics))
            at += units
        started = time.perf_counter()
        try:
            grads, counts, stats = self._reduce(results)
        except RuntimeError:  # a member is gone: closing this end fails the others' waits on it now
            self._collective.close()
            self._collective = None
            raise
        reduced = time.perf_counter()
        try:
            grad, combined = combine(grads, counts, step, self.replica.weighting, dict(self.replica.loss_weights))
        except NonFiniteGradientError as exc:
            if self.replica.on_nonfinite == "stop":
                raise
            log.warning("replica %d: %s; the step makes no update", self.shard, exc)
            grad, combined = None, Combined({f: 0.0 for f in grads}, float("nan"))
        if grad is not None:
            if self._collective.world > 1:  # another member may fail this step after this one applied it
                self._before = self.state()
            self._apply(grad, lr, stats, sum(counts.values()))
        self.steps = step + 1
        applied = time.perf_counter()
        state = self.state() if sync and self.rank == 0 else None
        metrics = tuple(dataclasses.replace(r, family_grads={}, norm_stats=None) for r in results)
        return StepReply(metrics, combined, grad is None, reduced - started, applied - reduced,
                         self.weights_digest() if check else "", state)  # fmt: skip

    def graph_step(self, ask: tuple) -> StepReply:
        """An ordinary step asked through the group's compiled graph: ``(step, plan, lr,
        diagnostics)``, this replica's share of the plan picked by its rank."""
        step, plan, lr, diagnostics = ask
        return self.replicated_step(step, plan[self.shard], lr, diagnostics)

    def _reduce(self, results: Sequence[ShardResult]) -> tuple[dict[str, torch.Tensor], dict[str, int], np.ndarray | None]:
        """Every family's gradient sum, task count and norm statistics over the whole group (this
        replica's results summed first): one all-reduce of the ``[families, parameters]``
        gradient rows, one of the counts and statistics (in float64, so the counts stay exact)."""
        size, device = self._flat().numel(), self._collective.device
        rows = torch.zeros(len(self._families), size, device=device)
        stats_size = self._stats_size()
        tail = torch.zeros(len(self._families) + stats_size, dtype=torch.float64)
        for result in results:
            for i, f in enumerate(self._families):
                if f in result.family_grads:
                    rows[i] += result.family_grads[f].to(device)
                tail[i] += result.family_counts.get(f, 0)
            if result.norm_stats is not None:
                tail[len(self._families) :] += torch.from_numpy(result.norm_stats)
        tail = tail.to(device)
        self._collective.all_reduce_(rows)
        self._collective.all_reduce_(tail)
        self.reduced += wire.nbytes((rows, tail))
        tail = tail.cpu()
        counts = {f: int(tail[i]) for i, f in enumerate(self._families) if tail[i] > 0}
        grads = {f: rows[i] for i, f in enumerate(self._families) if f in counts}
        stats = tail[len(self._families) :].numpy() if stats_size else None
        return grads, counts, stats

    def _stats_size(self) -> int:
        """The length of :func:`~distmeta.models.batch_statistics`' vector for this network."""
        if not self.running_norms:
            return 0
        return 2 * sum(b.numel() for n, b in self.buffers.items() if n.endswith("running_mean"))

    def _apply(self, grad: torch.Tensor, lr: float, stats: np.ndarray | None, tasks: int) -> None:
        """Clip and step as the learner does (``clip_grad_norm_``, Adam at the schedule's ``lr``),
        then move the running estimates."""
        params = dict(self.model.named_parameters())
        for name, g in unflatten(grad.to(self.device), params).items():
            params[name].grad = g.clone()
        if self.replica.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(params.values()), self.replica.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if stats is not None:
            update_running(self.model, torch.from_numpy(stats / tasks))
