"""``RayShardGroup``: one meta-step's shards on Ray actors, recomputing lost work.

Composes the actors' lifecycle (:mod:`distmeta.shard.actors`), the step's call state machine
(:mod:`distmeta.shard.calls`) and the wire format (:mod:`distmeta.shard.wire`).

A shard whose actor died, raised a system error or missed ``timeout_s`` is recomputed, on the
(restarted) same actor or the next one, up to ``max_attempts`` times; tasks are deterministic, so
the step's result is unchanged. A shard recomputed on another actor takes its own images along
(object-store references), so class-partitioned shards recompute the same episodes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from distmeta import interrupts
from distmeta.shard import wire
from distmeta.shard.actors import ActorResources, ShardActors
from distmeta.shard.calls import Lost, Request, StepCalls
from distmeta.shard.channel import POLL_S
from distmeta.shard.group import InFlight, frozen_plan
from distmeta.shard.result import ShardResult
from distmeta.shard.spec import ShardData, WorkerSpec

INLINE_WEIGHTS_BYTES = 100 * 1024
"""Ray's own limit for inlining call arguments (``max_direct_call_object_size``)."""


def share(array: np.ndarray):
    """What goes to every Ray-called shard this step: an object-store reference, put once and read
    by every actor of a node, or for weights under :data:`INLINE_WEIGHTS_BYTES` the array itself
    (below Ray's inline limit an argument travels inside the task message anyway; a put there only
    adds a round trip to the object store)."""
    import ray

    return array if array.nbytes < INLINE_WEIGHTS_BYTES else ray.put(array)


class RayShardGroup:
    """One Ray actor per shard; actors on this node answer over local channels, the rest (and
    every retry) over Ray calls with the step's weights put once."""

    def __init__(self, spec: WorkerSpec, num_shards: int, resources: ActorResources, timeout_s: float,
                 shard_data: Sequence[ShardData] = (), max_attempts: int = 3, local_channel: bool = True):  # fmt: skip
        self.num_shards, self.timeout_s, self.max_attempts = num_shards, timeout_s, max_attempts
        self._actors = ShardActors(spec, num_shards, resources, timeout_s, shard_data, local_channel)
        self.faults = self._actors.faults
        self.traffic = wire.Traffic()

    # -- inspection (tests, the bench) ---------------------------------------------------------
    @property
    def actors(self) -> list:
        return list(self._actors.handles)

    @property
    def channels(self) -> dict:
        return dict(self._actors.channels)

    @property
    def data_refs(self) -> list[tuple]:
        return list(self._actors.data)

    def workers_info(self):
        return list(self._actors.info)

    # -- the Transport the step's calls use ----------------------------------------------------
    def host(self, k: int, attempt: int) -> int:
        return self._actors.host(k, attempt)

    def data_for(self, k: int, host: int) -> tuple:
        return self._actors.data_for(k, host)

    def channel(self, host: int):
        return self._actors.channel(host)

    def drop_channel(self, host: int) -> None:
        self._actors.drop_channel(host)

    def call(self, host: int, request: Request, indices: list[int], slot: int, data: tuple):
        actor = self._actors.handles[host]
        return actor.compute.remote(request.step, request.shared, request.version, indices, *data, slot=slot,
                                    diagnostics=request.diagnostics, epoch=request.epoch, origin=request.origin)  # fmt: skip

    def fetch(self, ref) -> ShardResult:
        import ray

        try:
            return ray.get(ref, timeout=self.timeout_s)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.ObjectLostError) as exc:  # ObjectLostError: the result's node died before the fetch  # fmt: skip
            raise Lost(type(exc).__name__) from None

    # -- one step --------------------------------------------------------------------------------
    def submit(self, step: int, weights: torch.Tensor, version: int, plan, diagnostics: bool = True, epoch: int = 0,
               origin: torch.Tensor | None = None) -> InFlight:  # fmt: skip
        plan = frozen_plan(plan)
        array = wire.as_array(weights)
        shared = share(array) if len(self._actors.channels) < len(self._actors.handles) else array
        if shared is not array:  # put once, read by every node
            self.traffic.sent += array.nbytes
        first = None if origin is None else wire.as_array(origin)  # small (a policy's); sent inline
        calls = StepCalls(self, Request(step, version, array, shared, diagnostics, epoch, first), plan, self.max_attempts)
        return InFlight(step, version, plan, weights, calls)

    def collect(self, call: InFlight) -> list[ShardResult]:
        """Channel replies first, then every Ray call of the step in one wait (the common case:
        all healthy), each ready one fetched; late ones retried until the step is complete. A stop
        request (:mod:`distmeta.interrupts`) raises meanwhile: the step is abandoned."""
        import ray

        calls: StepCalls = call.handle
        calls.read_channels()
        while pending := calls.ray_calls():
            interrupts.check()
            wait_s = max(0.0, min(POLL_S, min(c.deadline for c in pending.values()) - time.monotonic()))
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=wait_s)
            for ref in ready:
                calls.receive(pending[ref])
            for ref in calls.expire(time.monotonic()):
                ray.cancel(ref)  # actor tasks cannot be force-cancelled; the answer is ignored
        if calls.suspects:
            self._actors.check(calls.suspects)
        return calls.finished()

    def close(self) -> None:
        self._actors.close()
