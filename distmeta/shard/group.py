"""``ShardGroup``: runs a meta-step's shards in-process or on Ray actors, and recomputes lost work.

This is the one place Ray meets the workers: :func:`remote_worker_class` wraps the plain
:class:`ShardWorker` with ``ray.remote`` and the resources asked for in the config.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from distmeta.errors import UserError
from distmeta.shard.channel import ChannelClient, ChannelError, ChannelTimeout
from distmeta.shard.placement import Bundle, reserve
from distmeta.shard.result import ShardResult
from distmeta.shard.worker import ShardData, ShardWorker, WorkerSpec

log = logging.getLogger(__name__)


@dataclass
class FaultCounters:
    """Cumulative fault-handling counts, logged by the learner under ``fault/``."""

    recomputed_tasks: int = 0
    failed_attempts: int = 0
    actor_restarts: int = 0
    """Shard actors Ray restarted after their process died (a new pid answered)."""
    lost_actors: int = 0
    """Shard actors gone for good (``cluster.max_actor_restarts`` spent); others take their shards."""


class ShardGroup(Protocol):
    num_shards: int
    faults: FaultCounters

    def compute(
        self, step: int, weights: torch.Tensor, version: int, plan: Sequence[Sequence[int]], diagnostics: bool = True
    ) -> list[ShardResult]:
        """One result per non-empty entry of ``plan`` (global task indices of shard k), in plan order."""

    def submit(
        self, step: int, weights: torch.Tensor, version: int, plan: Sequence[Sequence[int]], diagnostics: bool = True
    ) -> InFlight:
        """Start :meth:`compute` and return at once; :meth:`collect` waits for its results (the
        pipelined learner applies step s while the shards compute step s+1). ``diagnostics``: see
        :meth:`ShardWorker.compute`."""

    def collect(self, call: InFlight) -> list[ShardResult]:
        """The results of a submitted step, recomputing lost work as :meth:`compute` does."""

    def workers_info(self) -> list[dict[str, str]]:
        """Host/pid/device of each shard's worker."""

    def close(self) -> None:
        """Release the workers (kills actors)."""


@dataclass
class InFlight:
    """A submitted meta-step: what was asked (``version`` names the weights sent) and, until
    collected, the group's bookkeeping of it."""

    step: int
    version: int
    plan: list[list[int]]
    state: object = None
    weights: torch.Tensor | None = None
    """The flat weights it was asked at, where the caller keeps them (the pipelined learner)."""


class LocalShardGroup:
    """``cluster.num_shards = 0``: every shard of the plan is computed in this process, in order.
    There is nothing to overlap with: :meth:`submit` computes at once."""

    num_shards = 0

    def __init__(self, spec: WorkerSpec, data: ShardData = ()):
        self.worker = ShardWorker(0, spec, *data)
        self.faults = FaultCounters()

    def submit(self, step, weights, version, plan, diagnostics=True):
        return InFlight(step, version, [list(p) for p in plan], self.compute(step, weights, version, plan, diagnostics))

    def collect(self, call):
        return call.state

    def compute(self, step, weights, version, plan, diagnostics=True):
        results = []
        for k, idx in enumerate(plan):
            if not idx:
                continue
            result = self.worker.compute(step, weights, version, list(idx), diagnostics=diagnostics)
            result.shard = k
            results.append(result)
        return results

    def workers_info(self):
        return [self.worker.info()]

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ActorResources:
    num_cpus: float
    num_gpus: float
    max_restarts: int
    strategy: str = "PACK"
    """Placement-group strategy for the shards' bundles (``cluster.placement_strategy``)."""


START_TIMEOUT_S = 60.0
"""Shard actors (and their placement group) get at least this long to start."""


def remote_worker_class(resources: ActorResources):
    import ray

    return ray.remote(
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
        max_restarts=resources.max_restarts,
        max_task_retries=0,  # the group decides where lost tasks are recomputed
    )(ShardWorker)


def _in_bundle(group, k: int) -> dict:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=k)}


class RayShardGroup:
    """One Ray actor per shard. Weights go out once per step through the object store.

    ``shard_data[k]`` is, per family, the training images shard ``k`` draws from (None for
    computed families and families it does not own): each distinct images object is ``ray.put``
    once and reaches the actors as a top-level argument, which Ray resolves from the node's
    object store without a copy (one object per family when shards share it, one per shard's
    part when classes are partitioned; an actor is given only the families it owns).

    A shard whose actor died, raised a system error or missed ``timeout_s`` is recomputed, on the
    (restarted) same actor or the next one, up to ``max_attempts`` times; tasks are deterministic,
    so the step's result is unchanged. A shard recomputed on another actor takes its own images
    along (an object-store reference), so class-partitioned shards recompute the same episodes.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        num_shards: int,
        resources: ActorResources,
        timeout_s: float,
        shard_data: Sequence[ShardData] = (),
        max_attempts: int = 3,
        local_channel: bool = True,
    ):
        # starting takes longer than a step (importing torch, building the model): at least a minute
        start_s = max(timeout_s, START_TIMEOUT_S)
        # one bundle per shard, reserved up front: a cluster that cannot hold them fails here, by name
        self.placement = reserve(Bundle(resources.num_cpus, resources.num_gpus), num_shards, resources.strategy, start_s)
        self.actors: list = []
        self.channels: dict[int, ChannelClient] = {}  # actor -> its socket, for actors on this node
        self.timeout_s = timeout_s
        try:
            self._start(spec, num_shards, resources, start_s, shard_data, max_attempts)
            if local_channel:
                self._open_channels(start_s)
        except BaseException:
            self.close()  # no placement group or actor outlives a failed start
            raise

    def _start(self, spec, num_shards, resources, timeout_s, shard_data, max_attempts) -> None:
        import ray

        cls = remote_worker_class(resources)
        self.num_shards = num_shards
        self.max_attempts = max_attempts
        self.faults = FaultCounters()
        self.alive = [True] * num_shards
        shard_data = list(shard_data) or [()] * num_shards
        if len(shard_data) != num_shards:
            raise ValueError(f"{len(shard_data)} data partitions for {num_shards} shards")
        refs: dict[int, object] = {}  # id(images) -> its one object-store reference
        self.data_refs: list[tuple] = []
        for per_family in shard_data:
            for d in per_family:
                if d is not None and id(d) not in refs:
                    refs[id(d)] = ray.put(d)
            self.data_refs.append(tuple(None if d is None else refs[id(d)] for d in per_family))
        self.actors = [
            cls.options(**_in_bundle(self.placement, k)).remote(k, spec, *self.data_refs[k]) for k in range(num_shards)
        ]
        try:
            self._info = ray.get([a.info.remote() for a in self.actors], timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise UserError(
                f"{num_shards} shard actors ({resources.num_cpus} CPU, {resources.num_gpus} GPU each) did not start "
                f"within {timeout_s:.0f} s; the Ray cluster may lack the resources "
                f"(available: {ray.available_resources()})"
            ) from None

    def _open_channels(self, timeout_s: float) -> None:
        """A channel to each actor on this node (:mod:`distmeta.shard.channel`); an actor whose
        channel cannot open stays on Ray calls."""
        import ray

        here = ray.get_runtime_context().get_node_id()
        local = [h for h, info in enumerate(self._info) if info.get("node") == here]
        for h, ref in zip(local, [self.actors[h].open_channel.remote() for h in local]):
            try:
                self.channels[h] = ChannelClient(ray.get(ref, timeout=timeout_s), self.timeout_s)
            except (OSError, ray.exceptions.RayError) as exc:  # e.g. a socket path too long for AF_UNIX
                log.warning("shard actor %d: no local channel (%s); it gets Ray calls", h, str(exc)[:300])

    def _drop_channel(self, h: int) -> None:
        channel = self.channels.pop(h, None)
        if channel is not None:
            channel.close()

    def workers_info(self):
        return list(self._info)

    def compute(self, step, weights, version, plan, diagnostics=True):
        return self.collect(self.submit(step, weights, version, plan, diagnostics))

    def submit(self, step, weights, version, plan, diagnostics=True):
        call = InFlight(step, version, [list(p) for p in plan])
        array = weights.detach().cpu().numpy()  # NumPy arrays serialize without pickling a tensor
        shared = share_weights(array) if len(self.channels) < len(self.actors) else array
        call.state = _Calls(self, step, version, call.plan, shared, diagnostics, array)
        for k, idx in enumerate(call.plan):
            if idx:  # under shard_by=family a shard may have no task at a step
                call.state.send(k)
        return call

    def collect(self, call):
        import ray

        calls: _Calls = call.state
        pending = calls.pending
        channel_failed = self._collect_channels(calls)
        if not channel_failed:  # the common case, all shards healthy: one blocking get for the whole step
            try:
                if pending:
                    for result, (k, host, _) in zip(ray.get(list(pending), timeout=self.timeout_s), pending.values()):
                        calls.done(k, host, result)
                return calls.finished()
            except (ray.exceptions.RayError, TimeoutError):
                pass  # fall through: collect shard by shard, recomputing the ones that failed
        while pending:
            wait_s = max(0.0, min(deadline for _, _, deadline in pending.values()) - time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
            if not ready:
                now = time.monotonic()
                for ref, (k, host, deadline) in list(pending.items()):
                    if deadline <= now:
                        del pending[ref]
                        ray.cancel(ref)  # actor tasks cannot be force-cancelled; the answer is ignored
                        calls.suspects.setdefault(host, "hung")
                        calls.retry(k, f"no answer within cluster.step_timeout_s={self.timeout_s}")
                continue
            ref = ready[0]
            k, host, _ = pending.pop(ref)
            try:
                result = ray.get(ref, timeout=self.timeout_s)
            except (
                ray.exceptions.RayActorError,
                ray.exceptions.ActorUnavailableError,
                ray.exceptions.WorkerCrashedError,
                ray.exceptions.ObjectLostError,
            ) as exc:  # ObjectLostError: the result's node died before the fetch
                calls.suspects[host] = "died"
                calls.retry(k, type(exc).__name__)
                continue
            calls.done(k, host, result)
        self._check_actors(calls.suspects)
        return calls.finished()

    def _collect_channels(self, calls: _Calls) -> bool:
        """The replies of the step's local-channel calls; a shard whose channel broke or stayed
        silent is sent again through Ray. Returns whether any was."""
        failed = False
        pending = calls.pending
        for key, (k, host, deadline) in [(key, v) for key, v in pending.items() if isinstance(key, _ChannelCall)]:
            del pending[key]
            try:
                channel = self.channels.get(host)
                if channel is None:  # it broke on an earlier shard of this step (two shards, one actor)
                    raise ChannelError("its channel broke earlier in this step")
                calls.done(k, host, channel.reply(deadline))
            except RuntimeError:
                # the shard's own error, raised as Ray would raise it; replies still unread on
                # other channels would answer the wrong requests later: drop those channels
                for other in [v[1] for c, v in pending.items() if isinstance(c, _ChannelCall)] + [host]:
                    self._drop_channel(other)
                raise
            except ChannelError as exc:  # died or hung: Ray finds out which, another actor recomputes
                self._drop_channel(host)
                calls.suspects.setdefault(host, "hung" if isinstance(exc, ChannelTimeout) else "died")
                calls.retry(k, f"local channel: {exc}")
                failed = True
        return failed

    def _host(self, k: int, attempt: int) -> int:
        """The actor computing shard ``k`` at its ``attempt``-th try: its own, then the next ones,
        skipping actors that are gone for good."""
        n = len(self.actors)
        hosts = [(k + attempt + j) % n for j in range(n)]
        alive = [h for h in hosts if self.alive[h]]
        if not alive:
            raise RuntimeError("every shard actor is gone (cluster.max_actor_restarts spent on each)")
        return alive[0]

    def _check_actors(self, suspects: dict[int, str]) -> None:
        """After failures: which actors did Ray restart (a new process answers), which are gone?
        A hung actor would answer nothing before its running call ends (actors take one call at
        a time), so it is killed and restarted first. All suspects are asked at once, for as long
        as a start may take; one that does not answer is given up and killed (its bundle freed)."""
        import ray

        for h, why in suspects.items():
            if why == "hung":
                ray.kill(self.actors[h], no_restart=False)  # Ray restarts it if max_actor_restarts allows
        # a restart is a start: it gets as long as one
        waiting, gone, deadline = set(suspects), set(), time.monotonic() + max(self.timeout_s, START_TIMEOUT_S)
        while waiting and time.monotonic() < deadline:
            asked = {self.actors[h].info.remote(): h for h in waiting}
            ready, _ = ray.wait(list(asked), num_returns=len(asked), timeout=max(0.1, deadline - time.monotonic()))
            for ref in ready:
                h = asked[ref]
                try:
                    info = ray.get(ref, timeout=1.0)  # ready: it does not wait
                except ray.exceptions.ActorUnavailableError:  # restarting: ask again next round
                    continue
                except ray.exceptions.RayActorError:  # dead for good
                    waiting.discard(h)
                    gone.add(h)
                    continue
                waiting.discard(h)
                if info.get("pid") != self._info[h].get("pid"):
                    self.faults.actor_restarts += 1
                    self._info[h] = info
            time.sleep(0.2 if waiting else 0)
        for h in sorted(waiting | gone):
            self.alive[h] = False
            self.faults.lost_actors += 1
            ray.kill(self.actors[h], no_restart=True)
            log.warning(
                "shard actor %d is gone (cluster.max_actor_restarts spent, or no resources to restart it); "
                "the other actors take its shards",
                h,
            )

    def close(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone: nothing to release
                pass
        for h in list(self.channels):
            self._drop_channel(h)
        self.actors = []
        if self.placement is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self.placement)
            except Exception as exc:  # Ray already shut down: nothing left to release
                log.debug("placement group not removed: %s", exc)
            self.placement = None


class _Calls:
    """One submitted step's shard calls on a :class:`RayShardGroup`: which are pending (object
    ref -> shard, actor, deadline), how often each shard was tried, which actors failed."""

    def __init__(
        self,
        group: RayShardGroup,
        step: int,
        version: int,
        plan: list[list[int]],
        weights_ref,
        diagnostics: bool,
        weights_array=None,
    ):
        self.group, self.step, self.version, self.plan, self.weights_ref = group, step, version, plan, weights_ref
        self.weights_array = weights_array  # what a local channel sends
        self.diagnostics = diagnostics
        self.results: list[ShardResult | None] = [None] * len(plan)
        self.attempts = [0] * len(plan)
        self.pending: dict = {}
        self.suspects: dict[int, str] = {}  # actors that failed this step -> "died" or "hung"

    def send(self, k: int) -> None:
        g = self.group
        host = g._host(k, self.attempts[k])
        # another shard's actor may hold other classes or families: then send shard k's own
        data = g.data_refs[k] if g.data_refs[host] != g.data_refs[k] else ()
        if not data and not self.attempts[k] and host in g.channels:  # first try on this node's actor: the socket
            try:
                g.channels[host].request(self.step, self.weights_array, self.version, self.plan[k], self.diagnostics)
                self.pending[_ChannelCall(k)] = (k, host, time.monotonic() + g.timeout_s)
                return
            except ChannelError as exc:
                log.warning("shard actor %d: local channel failed (%s); back to Ray calls", host, exc)
                g._drop_channel(host)
        ref = g.actors[host].compute.remote(
            self.step, self.weights_ref, self.version, self.plan[k], *data, diagnostics=self.diagnostics
        )
        self.pending[ref] = (k, host, time.monotonic() + g.timeout_s)

    def retry(self, k: int, why: str) -> None:
        g = self.group
        self.attempts[k] += 1
        g.faults.failed_attempts += 1
        g.faults.recomputed_tasks += len(self.plan[k])
        if self.attempts[k] >= g.max_attempts:
            raise RuntimeError(f"shard {k} failed {self.attempts[k]} times at step {self.step}; last error: {why}")
        log.warning("shard %d at step %d: %s; recomputing its %d tasks", k, self.step, why, len(self.plan[k]))
        self.send(k)

    def done(self, k: int, host: int, result: ShardResult) -> None:
        result.shard, result.worker = k, self.group._info[host]
        self.results[k] = result

    def finished(self) -> list[ShardResult]:
        self.pending.clear()
        return [r for r in self.results if r is not None]


@dataclass(frozen=True)
class _ChannelCall:
    """A pending key of a shard call sent over a local channel (Ray calls are keyed by their ref;
    a channel carries first tries only)."""

    shard: int


INLINE_WEIGHTS_BYTES = 100 * 1024
"""Ray's own limit for inlining call arguments (``max_direct_call_object_size``)."""


def share_weights(array):
    """What goes to every shard this step: an object-store reference, put once and read by every
    actor of a node, or for weights under :data:`INLINE_WEIGHTS_BYTES` the array itself.

    Below Ray's inline limit an argument travels inside the task message anyway; a ``ray.put``
    there only adds a round trip to the object store (measured: about a fifth of a sine
    meta-step on 2 cores).
    """
    import ray

    return array if array.nbytes < INLINE_WEIGHTS_BYTES else ray.put(array)
