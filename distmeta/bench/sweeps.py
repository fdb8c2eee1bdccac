"""What one collective and one round of the learner's calls cost on this machine, alone: the
constants :mod:`distmeta.bench.scaling` gives the cost model besides its training runs.

- :func:`all_reduce`: gloo all-reduces between Ray actors, formed as the replicas form theirs
  (:mod:`distmeta.shard.collective`), against the payload; the ring's latency and bandwidth fitted.
- :func:`calls`: one step's calls from the learner to ``n`` actors that do no work, as actor
  tasks (what the all-reduce group does) or through a compiled graph; the learner's CPU per
  round, fitted as ``e0 + e1 n``.
- :func:`replicated`: real replicated steps driven both ways, their cost to the learner and
  whether they end at the same bits.
"""

from __future__ import annotations

import resource
import statistics
import time

from distmeta.bench import costmodel

SIZES = tuple(4**k * 1024 for k in range(1, 8))  # 4 KiB .. 16 MiB
"""The all-reduce sweep's payloads."""


class _Peer:
    """One rank of the sweep: a gloo collective as a replica forms it."""

    def __init__(self, rank: int):
        self.rank, self.host = rank, None

    def host_store(self) -> int:
        from distmeta.shard.collective import StoreHost

        self.host = StoreHost(60.0)
        return self.host.port

    def join(self, address: str, port: int, world: int) -> None:
        from distmeta.shard.collective import Collective

        own = self.host.store if self.host is not None else None
        self.collective = Collective(address, port, self.rank, world, 0, 60.0, address, own)

    def time_all_reduce(self, nbytes: int, repeats: int) -> float:
        """The median seconds of ``repeats`` all-reduces of ``nbytes``, each after a barrier; the
        sums checked (every element the number of ranks)."""
        import torch

        tensor, token = torch.ones(max(nbytes // costmodel.BYTES, 1)), torch.zeros(1)
        self.collective.all_reduce_(tensor)  # warm: buffers, connections
        times = []
        for _ in range(repeats):
            tensor.fill_(1.0)
            self.collective.all_reduce_(token)
            start = time.perf_counter()
            self.collective.all_reduce_(tensor)
            times.append(time.perf_counter() - start)
        if not bool((tensor == self.collective.world).all()):
            raise RuntimeError(f"rank {self.rank}: the all-reduce of ones summed to {tensor.unique().tolist()}")
        return statistics.median(times)


def all_reduce(worlds: tuple[int, ...] = (2, 4), sizes: tuple[int, ...] = SIZES, repeats: int = 5) -> list[dict]:
    """For each count of ``worlds`` Ray actors on this machine: all-reduce seconds per payload
    (the slowest rank's median) and the link fitted to them; in the caller's Ray runtime."""
    import ray

    peer = ray.remote(num_cpus=0)(_Peer)
    address = ray.util.get_node_ip_address()
    out = []
    for n in worlds:
        peers = [peer.remote(r) for r in range(n)]
        try:
            port = ray.get(peers[0].host_store.remote(), timeout=120)  # includes the actors' start
            ray.get([p.join.remote(address, port, n) for p in peers], timeout=120)
            seconds = [max(ray.get([p.time_all_reduce.remote(s, repeats) for p in peers], timeout=120)) for s in sizes]
        finally:
            for p in peers:
                ray.kill(p)
        link = costmodel.fit_link(f"gloo, {n} processes", n, list(sizes), seconds)
        out.append(
            {"ranks": n, "sizes": list(sizes), "seconds": seconds, "latency_s": link.latency_s, "bandwidth": link.bandwidth}
        )
    return out


class _Answerer:
    """An actor that answers a step's call as a replica does, with no work: what the learner's
    calls cost alone."""

    def step(self, ask: tuple) -> dict:
        return {"step": ask[0], "metrics": [0.0] * 16}


def calls(counts: tuple[int, ...] = (1, 4, 16), rounds: int = 50, compiled: bool = False) -> dict:
    """The learner's side of one step's calls to ``n`` actors (submit, wait, fetch): wall time
    and this process's CPU time per round, and ``(e0, e1)`` fitted to the CPU time, the serial
    part that actors on other machines do not take off the learner. ``compiled``: through a Ray
    compiled graph (``experimental_compile``) instead of one actor task per call, as
    ``cluster.replica_calls: compiled`` drives the replicas."""
    import ray

    answerer = ray.remote(num_cpus=0)(_Answerer)
    out: dict = {"counts": list(counts), "compiled": compiled, "wall_s": [], "cpu_s": []}
    for n in counts:
        actors = [answerer.remote() for _ in range(n)]
        graph = _compiled(actors) if compiled else None
        try:
            _round_trip(actors, graph, 0)  # started
            walls, cpu = [], _cpu_s()
            for i in range(rounds):
                start = time.perf_counter()
                _round_trip(actors, graph, i)
                walls.append(time.perf_counter() - start)
            out["cpu_s"].append((_cpu_s() - cpu) / rounds)
            out["wall_s"].append(statistics.median(walls))
        finally:
            if graph is not None:
                graph.teardown()
            for a in actors:
                ray.kill(a)
    out["exchange_s"] = list(costmodel.fit_exchange(list(counts), out["cpu_s"]))
    return out


def _round_trip(actors: list, graph, step: int) -> list:
    import ray

    ask = (step, list(range(8)), 1e-3, True, False, False)  # a replicated step's arguments
    if graph is not None:
        return ray.get(graph.execute(ask), timeout=60)
    return ray.get([a.step.remote(ask) for a in actors], timeout=60)


def _compiled(actors: list):
    from ray.dag import InputNode, MultiOutputNode

    with InputNode() as ask:
        graph = MultiOutputNode([a.step.bind(ask) for a in actors])
    return graph.experimental_compile()


def replicated(actors: int = 2, steps: int = 30, tasks: int = 8) -> dict:
    """Real replicated steps (a sine MLP's MAML, gloo between ``actors`` replicas) asked by actor
    tasks, then through a compiled graph (``cluster.replica_calls``), each on a group of its own
    from the same state: the learner's wall and CPU time per step, and whether both end at the
    same bits."""
    import numpy as np
    import torch

    from distmeta.algorithms import build
    from distmeta.models import ModelSpec
    from distmeta.shard.actors import ActorResources
    from distmeta.shard.allreduce_group import AllReduceShardGroup
    from distmeta.shard.replica import capture
    from distmeta.shard.spec import ReplicaSpec, WorkerSpec
    from distmeta.tasks import SineFamily, assign
    from distmeta.tasks.mixture import Mixture

    spec = WorkerSpec(seed=3, families=(SineFamily(),), mixture=Mixture(("sine",), (1.0,)), threads=1,
                      model=ModelSpec("mlp", (1,), 1, hidden=(40, 40)), algorithm=build("maml", steps=1, lr=0.01),
                      replica=ReplicaSpec(meta_lr=0.01, grad_clip=1.0, timeout_s=60.0))  # fmt: skip
    torch.manual_seed(0)
    model = spec.algorithm.meta_model(spec.model.build())
    start, plan = capture(model, torch.optim.Adam(model.parameters()), 0), [tuple(r) for r in assign(tasks, actors)]
    out: dict = {"actors": actors, "steps": steps}
    for how in ("tasks", "compiled"):  # cluster.replica_calls
        group = AllReduceShardGroup(spec, actors, ActorResources(num_cpus=0, num_gpus=0, max_restarts=0), 60.0, calls=how)
        try:
            group.load_state(start)
            walls, cpu = [], _cpu_s()
            for step in range(steps):
                began = time.perf_counter()
                group.step(step, plan, 0.01, diagnostics=False)
                walls.append(time.perf_counter() - began)
            out[how] = {"wall_s": statistics.median(walls), "cpu_s": (_cpu_s() - cpu) / steps}
            out[how]["weights"] = group.state().weights
        finally:
            group.close()
    out["same_bits"] = bool(np.array_equal(out["tasks"].pop("weights"), out["compiled"].pop("weights")))
    return out


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


__all__ = ["SIZES", "all_reduce", "calls", "replicated"]
