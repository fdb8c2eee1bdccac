"""One submitted step's shard calls: an explicit state machine of sends, replies and retries.

Each shard of the plan is *pending* on a host (first over the host's local channel if it has
one, else as a Ray call), then *done* with its result, or *failed* (the host died, hung or its
channel broke) and sent again to the next host, up to ``max_attempts`` tries. What it needs from
the actors and from Ray is the :class:`Transport` interface; no Ray import here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from distmeta.errors import ShardsFailedError
from distmeta.shard.channel import ChannelClient, ChannelError, ChannelTimeout
from distmeta.shard.group import FaultCounters
from distmeta.shard.result import ShardResult
from distmeta.shard.wire import Traffic, nbytes

log = logging.getLogger(__name__)


class Lost(Exception):
    """A call's host is gone (died, or its result's node died before the fetch)."""


@dataclass(frozen=True)
class Request:
    """What a shard is asked: tasks ``indices`` of ``step`` as plan slot ``slot``, at the weights
    ``array`` (over a channel) or ``shared`` (over Ray: the array inline or an object reference);
    for a later outer epoch, which one and the step's first weights, ``origin``."""

    step: int
    version: int
    array: Any
    shared: Any
    diagnostics: bool
    epoch: int = 0
    origin: Any = None


class Transport(Protocol):
    """What the state machine needs from the actors (:class:`distmeta.shard.ray_group.RayShardGroup`)."""

    timeout_s: float
    faults: FaultCounters
    traffic: Traffic

    def host(self, k: int, attempt: int) -> int: ...

    def data_for(self, k: int, host: int) -> tuple: ...

    def channel(self, host: int) -> ChannelClient | None: ...

    def drop_channel(self, host: int) -> None: ...

    def call(self, host: int, request: Request, indices: list[int], slot: int, data: tuple) -> Any:
        """Send a Ray call; returns its reference."""
        ...

    def fetch(self, ref: Any) -> ShardResult:
        """The result of a ready call; raises :class:`Lost` when its host or result is gone."""
        ...


@dataclass(frozen=True)
class Pending:
    shard: int
    host: int
    deadline: float
    ref: Any = None
    """The Ray call's reference; None for a call over the host's local channel."""


class StepCalls:
    def __init__(self, transport: Transport, request: Request, plan: Sequence[Sequence[int]], max_attempts: int = 3):
        self.transport, self.request, self.plan, self.max_attempts = transport, request, [list(p) for p in plan], max_attempts
        self.results: list[ShardResult | None] = [None] * len(plan)
        self.attempts = [0] * len(plan)
        self.pending: dict[int, Pending] = {}  # shard -> its call in flight
        self.suspects: dict[int, str] = {}  # hosts that failed this step -> "died" or "hung"
        for k, idx in enumerate(self.plan):
            if idx:  # under shard_by=family a shard may have no task at a step
                self.send(k)

    def send(self, k: int) -> None:
        t = self.transport
        host = t.host(k, self.attempts[k])
        data = t.data_for(k, host)
        deadline = time.monotonic() + t.timeout_s
        channel = t.channel(host) if not data and not self.attempts[k] else None  # first tries only
        if channel is not None:
            r = self.request
            try:
                channel.request(r.step, r.array, r.version, self.plan[k], r.diagnostics, k, r.epoch, r.origin)
                t.traffic.sent += nbytes(r.array) + nbytes(r.origin)
                self.pending[k] = Pending(k, host, deadline)
                return
            except ChannelError as exc:
                log.warning("shard actor %d: local channel failed (%s); back to Ray calls", host, exc)
                t.drop_channel(host)
        self.pending[k] = Pending(k, host, deadline, t.call(host, self.request, self.plan[k], k, data))
        t.traffic.sent += nbytes(self.request.shared) + nbytes(self.request.origin)  # inline; a reference was counted once, put

    def fail(self, k: int, why: str, suspect: str) -> None:
        """Shard ``k``'s call failed on its host (``suspect``: ``died`` or ``hung``): try again
        elsewhere, or give up after ``max_attempts``."""
        call = self.pending.pop(k)
        self.suspects.setdefault(call.host, suspect)
        self.attempts[k] += 1
        faults = self.transport.faults
        faults.failed_attempts += 1
        faults.recomputed_tasks += len(self.plan[k])
        if self.attempts[k] >= self.max_attempts:
            hint = "; if a step of this workload takes that long, raise cluster.step_timeout_s" if suspect == "hung" else ""
            raise ShardsFailedError(
                f"shard {k} failed {self.attempts[k]} times at step {self.request.step}; last error: {why}{hint}"
            )
        log.warning("shard %d at step %d: %s; recomputing its %d tasks", k, self.request.step, why, len(self.plan[k]))
        self.send(k)

    def done(self, k: int, result: ShardResult) -> None:
        del self.pending[k]
        self.results[k] = result
        self.transport.traffic.received += nbytes(result)

    def read_channels(self) -> None:
        """The replies of the calls over local channels; a shard whose channel broke or stayed
        silent goes to Ray. A shard's own error is raised, after dropping every channel with an
        unread reply (those would answer later requests)."""
        t = self.transport
        for k, call in [(k, c) for k, c in self.pending.items() if c.ref is None]:
            channel = t.channel(call.host)
            if channel is None:  # it broke on an earlier shard of this step (two shards, one actor)
                self.fail(k, "local channel: it broke earlier in this step", "died")
                continue
            try:
                self.done(k, channel.reply(call.deadline))
            except ChannelError as exc:  # died or hung: Ray finds out which, another actor recomputes
                t.drop_channel(call.host)
                self.fail(k, f"local channel: {exc}", "hung" if isinstance(exc, ChannelTimeout) else "died")
            except RuntimeError:
                for other in {c.host for c in self.pending.values() if c.ref is None} | {call.host}:
                    t.drop_channel(other)
                raise

    def ray_calls(self) -> dict[Any, Pending]:
        return {c.ref: c for c in self.pending.values() if c.ref is not None}

    def receive(self, call: Pending) -> None:
        """A ready Ray call: its result, or a retry when its host is gone."""
        try:
            self.done(call.shard, self.transport.fetch(call.ref))
        except Lost as exc:
            self.fail(call.shard, str(exc), "died")

    def expire(self, now: float) -> list[Any]:
        """Ray calls past their deadline are retried elsewhere; returns their references (to cancel)."""
        late = [c for c in self.pending.values() if c.ref is not None and c.deadline <= now]
        for c in late:
            self.fail(c.shard, f"no answer within cluster.step_timeout_s={self.transport.timeout_s}", "hung")
        return [c.ref for c in late]

    def finished(self) -> list[ShardResult]:
        return [r for r in self.results if r is not None]
