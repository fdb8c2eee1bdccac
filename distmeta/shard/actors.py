"""The Ray actor lifecycle of a shard group, reusable by any group kind: placement, start with
data, local channels, which actor hosts a shard at an attempt, health checks and restarts, close.

This and :mod:`distmeta.shard.ray_group` are where Ray meets the workers:
:func:`remote_worker_class` wraps the plain :class:`ShardWorker` with ``ray.remote`` and the
resources asked for in the config.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from distmeta.errors import UserError
from distmeta.shard.channel import ChannelClient
from distmeta.shard.group import FaultCounters
from distmeta.shard.placement import Bundle, reserve
from distmeta.shard.spec import ShardData, WorkerSpec
from distmeta.shard.worker import ShardWorker

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
"""Shard actors (and their placement group) get at least this long to start."""


@dataclass(frozen=True)
class ActorResources:
    num_cpus: float
    num_gpus: float
    max_restarts: int
    strategy: str = "PACK"
    """Placement-group strategy for the shards' bundles (``cluster.placement_strategy``)."""


def remote_worker_class(resources: ActorResources, worker_class: type = ShardWorker):
    import ray

    return ray.remote(
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
        max_restarts=resources.max_restarts,
        max_task_retries=0,  # the group decides where lost tasks are recomputed
    )(worker_class)


class ShardActors:
    """One Ray actor per shard, each in its own placement-group bundle (reserved up front: a
    cluster that cannot hold them fails here, by name). ``shard_data[k]`` is, per data unit, the
    images shard ``k`` holds: each distinct images object is ``ray.put`` once and reaches the
    actors as a top-level argument, which Ray resolves from the node's object store without a copy.
    """

    def __init__(self, spec: WorkerSpec, count: int, resources: ActorResources, timeout_s: float,
                 shard_data: Sequence[ShardData] = (), local_channel: bool = True, worker_class: type = ShardWorker):  # fmt: skip
        self.timeout_s = timeout_s
        self.start_s = max(timeout_s, START_TIMEOUT_S)  # importing torch, building the model: longer than a step
        self.handles: list = []
        self.channels: dict[int, ChannelClient] = {}  # actor -> its socket, for actors on this node
        self.faults = FaultCounters()
        self.placement = reserve(Bundle(resources.num_cpus, resources.num_gpus), count, resources.strategy, self.start_s)
        try:
            self._start(spec, count, resources, list(shard_data) or [()] * count, worker_class)
            if local_channel:
                self._open_channels()
        except BaseException:
            self.close()  # no placement group or actor outlives a failed start
            raise

    def _start(self, spec: WorkerSpec, count: int, resources: ActorResources, shard_data: list, worker_class: type) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if len(shard_data) != count:
            raise ValueError(f"{len(shard_data)} data partitions for {count} shards")
        refs: dict[int, object] = {}  # id(images) -> its one object-store reference
        for per_unit in shard_data:
            for d in per_unit:
                if d is not None and id(d) not in refs:
                    refs[id(d)] = ray.put(d)
        self.data = [tuple(None if d is None else refs[id(d)] for d in per_unit) for per_unit in shard_data]
        self.alive = [True] * count
        cls = remote_worker_class(resources, worker_class)
        for k in range(count):
            strategy = PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=k)
            self.handles.append(cls.options(scheduling_strategy=strategy).remote(k, spec, *self.data[k]))
        try:
            self.info = ray.get([a.info.remote() for a in self.handles], timeout=self.start_s)
        except ray.exceptions.GetTimeoutError:
            raise UserError(
                f"{count} shard actors ({resources.num_cpus} CPU, {resources.num_gpus} GPU each) did not start "
                f"within {self.start_s:.0f} s; the Ray cluster may lack the resources "
                f"(available: {ray.available_resources()})"
            ) from None

    def _open_channels(self) -> None:
        """A channel to each actor on this node (:mod:`distmeta.shard.channel`); an actor whose
        channel cannot open stays on Ray calls."""
        import ray

        here = ray.get_runtime_context().get_node_id()
        local = [h for h, info in enumerate(self.info) if info.get("node") == here]
        for h, ref in zip(local, [self.handles[h].open_channel.remote() for h in local]):
            try:
                self.channels[h] = ChannelClient(ray.get(ref, timeout=self.start_s), self.timeout_s)
            except (OSError, ray.exceptions.RayError) as exc:  # e.g. a socket path too long for AF_UNIX
                log.warning("shard actor %d: no local channel (%s); it gets Ray calls", h, str(exc)[:300])

    def channel(self, host: int) -> ChannelClient | None:
        return self.channels.get(host)

    def drop_channel(self, host: int) -> None:
        """Close actor ``host``'s channel for good: it gets Ray calls from now on."""
        channel = self.channels.pop(host, None)
        if channel is not None:
            channel.close()

    def host(self, k: int, attempt: int) -> int:
        """The actor computing shard ``k`` at its ``attempt``-th try: its own, then the next ones,
        skipping actors that are gone for good."""
        n = len(self.handles)
        alive = [h for h in ((k + attempt + j) % n for j in range(n)) if self.alive[h]]
        if not alive:
            raise RuntimeError("every shard actor is gone (cluster.max_actor_restarts spent on each)")
        return alive[0]

    def data_for(self, k: int, host: int) -> tuple:
        """What shard ``k`` must bring to actor ``host``: nothing when the actor holds shard
        ``k``'s images already, else shard ``k``'s own object references."""
        return self.data[k] if self.data[host] != self.data[k] else ()

    def check(self, suspects: dict[int, str]) -> None:
        """After failures: which actors did Ray restart (a new process answers), which are gone?
        A hung actor would answer nothing before its running call ends (actors take one call at
        a time), so it is killed and restarted first. All suspects are asked at once, for as long
        as a start may take; one that does not answer is given up and killed (its bundle freed)."""
        import ray

        for h, why in suspects.items():
            if why == "hung":
                ray.kill(self.handles[h], no_restart=False)  # Ray restarts it if max_actor_restarts allows
        waiting, gone, deadline = set(suspects), set(), time.monotonic() + self.start_s
        while waiting and time.monotonic() < deadline:
            asked = {self.handles[h].info.remote(): h for h in waiting}
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
                if info.get("pid") != self.info[h].get("pid"):
                    self.faults.actor_restarts += 1
                    self.info[h] = info
            time.sleep(0.2 if waiting else 0)
        for h in sorted(waiting | gone):
            self._give_up(h)

    def _give_up(self, h: int) -> None:
        import ray

        self.alive[h] = False
        self.faults.lost_actors += 1
        ray.kill(self.handles[h], no_restart=True)
        log.warning(
            "shard actor %d is gone (cluster.max_actor_restarts spent, or no resources to restart it); "
            "the other actors take its shards", h,
        )  # fmt: skip

    def close(self) -> None:
        import ray

        for actor in self.handles:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone: nothing to release
                pass
        for h in list(self.channels):
            self.drop_channel(h)
        self.handles = []
        if self.placement is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self.placement)
            except Exception as exc:  # Ray already shut down: nothing left to release
                log.debug("placement group not removed: %s", exc)
            self.placement = None
