"""``AllReduceShardGroup`` (``cluster.aggregation: allreduce``): the shard actors form a
collective group and update replicas of the meta-parameters themselves, so no gradient and no
weight vector passes through the learner on an ordinary step.

The learner asks each step with the step number, the plan and the learning rate; every actor
answers with its shard's metrics (:class:`~distmeta.shard.replica.StepReply`). On the steps the
learner needs the weights for (validation, checkpoints, the end) rank 0 also returns its whole
state, and every ``check_every`` steps and at each of those the replicas' weight digests are
compared: replicas that diverged stop the run before anything is saved from them.

Composes the actors' lifecycle (:mod:`distmeta.shard.actors`, the same as the learner-mode group)
with the collective (:mod:`distmeta.shard.collective`): rank 0 hosts the rendezvous store, the
group hands its address to every actor through Ray calls.

A step that fails (an actor died, or gave no answer within the step timeout while the others'
collectives timed out waiting for it) is recovered in :mod:`distmeta.shard.recovery`: the lost
actors are restarted, the survivors go back to the state before the step, the restarted ones get
a survivor's state, a new generation of the collective is formed and the step is computed again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from distmeta.errors import NonFiniteGradientError, ShardsFailedError
from distmeta.shard import wire
from distmeta.shard.actors import ActorResources, ShardActors
from distmeta.shard.aggregate import Combined
from distmeta.shard.recovery import recover
from distmeta.shard.replica import ReplicaState, ReplicaWorker, StepReply
from distmeta.shard.replica_graph import ReplicaGraph, cause_line
from distmeta.shard.result import ShardResult
from distmeta.shard.spec import ShardData, WorkerSpec

log = logging.getLogger(__name__)

CHECK_EVERY = 100
"""Steps between comparisons of the replicas' weight digests (besides every step that syncs)."""
MAX_ATTEMPTS = 3
"""Tries of one step (a lost actor costs one) before the run stops."""
GRACE_S = 5.0
"""Past the step timeout, how long the members still in a collective get to fail out of it
(gloo's own timeout, of the same length, started when they entered it)."""
REPLICA_CALLS = ("tasks", "compiled")
"""How the learner asks the replicas for an ordinary step: one Ray actor task each, or one
execution of a Ray compiled graph over all of them (less of the learner's time per replica;
sync, check and recovery steps still go by tasks)."""


class ReplicasDivergedError(RuntimeError):
    """The replicas of the meta-parameters no longer hold the same weights."""


@dataclass(frozen=True)
class ReplicatedStep:
    """One step as the learner sees it in all-reduce mode: every shard's metrics, what the
    replicas' combination measured, whether they skipped the update, the seconds of the reduction
    itself (the last replica to reach the collective waits on no one: the least of their times) and
    of the slowest replica's update, and rank 0's state when the learner asked for it."""

    results: list[ShardResult]
    combined: Combined
    skipped: bool
    reduce_seconds: float
    apply_seconds: float
    state: ReplicaState | None


@dataclass(frozen=True)
class Ask:
    """How a step was asked (kept to compute it again after a failure)."""

    step: int
    plan: list
    lr: float
    diagnostics: bool


@dataclass
class Attempt:
    """One try of a step: each replica's reply, the replicas that did not answer (``died``,
    ``hung`` or ``failed``: a task error), what went wrong."""

    replies: list[StepReply | None]
    suspects: dict[int, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class AllReduceShardGroup:
    replicated = True
    """The learner sends steps, not weights, and loads the replicas' state when it needs it."""

    def __init__(self, spec: WorkerSpec, num_shards: int, resources: ActorResources, timeout_s: float,
                 shard_data: Sequence[ShardData] = (), check_every: int = CHECK_EVERY, calls: str = "tasks"):  # fmt: skip
        if spec.replica is None:
            raise ValueError("all-reduce mode needs WorkerSpec.replica")
        self.num_shards, self.timeout_s, self.check_every, self.calls = num_shards, timeout_s, check_every, calls
        self._graph = ReplicaGraph()  # calls="compiled"; not used again once broken, until torn down
        self.lifecycle = ShardActors(spec, num_shards, resources, timeout_s, shard_data, local_channel=False,
                                   worker_class=ReplicaWorker)  # fmt: skip
        self.faults = self.lifecycle.faults
        self.traffic = wire.Traffic()  # the learner's: a state out at the start, rank 0's back on a sync
        self.generation = 0
        self.backend = ""  # the collective's, as the ranks resolved cluster.collective
        self.held: ReplicaState | None = None  # the last full state seen, and the steps asked since
        self.asked: list[Ask] = []
        try:
            self.form()
        except BaseException:
            self.lifecycle.close()
            raise

    @property
    def actors(self) -> list:
        return list(self.lifecycle.handles)

    @property
    def members(self) -> list[int]:
        """The actors in the collective, in rank order: every one but those gone for good."""
        return [h for h, alive in enumerate(self.lifecycle.alive) if alive]

    def workers_info(self):
        return list(self.lifecycle.info)

    def form(self) -> None:
        """Rank 0 starts the store; every actor joins this generation of the collective."""
        import ray

        a, members = self.lifecycle, self.members
        port = ray.get(a.handles[members[0]].host_store.remote(), timeout=a.start_s)
        host = a.info[members[0]]["ip"]
        joins = [a.handles[h].join.remote(host, port, len(members), self.generation, a.info[h]["ip"], rank)
                 for rank, h in enumerate(members)]  # fmt: skip
        backends = self.get(joins, a.start_s, "forming the collective group")
        if len(set(backends)) > 1:  # cluster.collective=auto on actors of which only some see a GPU
            raise ShardsFailedError(
                f"all-reduce mode: the shard actors resolved cluster.collective to different backends ({backends}); "
                "set cluster.collective=gloo"
            )
        self.backend = backends[0]

    def load_state(self, state: ReplicaState) -> None:
        """Every replica becomes ``state`` (the learner's, at the start of training or a resume)."""
        import ray

        ref = ray.put(state)
        self.traffic.sent += wire.nbytes(state)
        handles = [self.lifecycle.handles[h] for h in self.members]
        digests = self.get([h.load_state.remote(ref) for h in handles], self.lifecycle.start_s, "loading")
        self.compare(digests, f"after loading the state of step {state.steps}")
        self._hold(state)

    def state(self) -> ReplicaState:
        """Rank 0's state."""
        state = self.get([self.lifecycle.handles[self.members[0]].state.remote()], self.timeout_s, "reading the state")[0]
        self.traffic.received += wire.nbytes(state)
        self._hold(state)
        return state

    def _hold(self, state: ReplicaState) -> None:
        self.held, self.asked = state, []

    def step(self, step: int, plan: Sequence[Sequence[int]], lr: float, diagnostics: bool = True,
             sync: bool = False) -> ReplicatedStep:  # fmt: skip
        """Meta-step ``step`` on every replica; ``sync``: with rank 0's state after it."""
        check = sync or (step + 1) % self.check_every == 0
        ask = Ask(step, list(plan) + [()] * (len(self.lifecycle.handles) - len(plan)), lr, diagnostics)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            tried = self.attempt(ask, sync, check)
            if not tried.errors:
                break
            self.faults.failed_attempts += 1
            self.faults.recomputed_tasks += sum(len(p) for p in ask.plan)
            if attempt == MAX_ATTEMPTS:
                raise ShardsFailedError(f"all-reduce mode: step {step} failed {attempt} times; last: {'; '.join(tried.errors)}")
            log.warning("all-reduce step %d failed (%s); recovering and computing it again", step, "; ".join(tried.errors))
            recover(self, step, tried.suspects)  # tears a broken graph down once the hung are killed
        if self._graph.broken:  # the graph failed but every actor answered by tasks: rebuild it next step
            self.drop_graph()
        replies = tried.replies
        self.traffic.received += wire.nbytes(replies)  # metrics only, and rank 0's state on a sync
        if check:
            self.compare([r.digest for r in replies], f"after step {step}")
        first = replies[0]
        self.asked.append(ask)
        if first.state is not None:
            self._hold(first.state)
        results = sorted((r for reply in replies for r in reply.results), key=lambda r: r.shard)
        return ReplicatedStep(
            results, first.combined, first.skipped, min(r.reduce_seconds for r in replies),
            max(r.apply_seconds for r in replies), first.state,
        )  # fmt: skip

    def attempt(self, ask: Ask, sync: bool = False, check: bool = False) -> Attempt:
        """One try of ``ask`` on every replica. A replica that neither answers nor fails within
        the step timeout, and the grace its peers' collectives need to time out on it, is hung."""
        import ray

        members = self.members
        if self.calls == "compiled" and len(members) == self.num_shards and not (sync or check or self._graph.broken):
            asked = (ask.step, [list(p) for p in ask.plan], ask.lr, ask.diagnostics)
            replies = self._graph.step(self.lifecycle.handles, asked, self.timeout_s + GRACE_S)
            if replies is not None:  # else by tasks: they name the replicas lost, the recovery rewinds
                return Attempt(replies)

        lost = [k for k, alive in enumerate(self.lifecycle.alive) if not alive]  # usually none
        refs = [self._ask(h, ask, sync, check, lost) for h in members]
        _, late = ray.wait(refs, num_returns=len(refs), timeout=self.timeout_s)
        if late:
            _, late = ray.wait(late, num_returns=len(late), timeout=self.timeout_s + GRACE_S)
        tried = Attempt([None] * len(refs))
        for rank, (k, ref) in enumerate(zip(members, refs)):
            if ref in late:
                ray.cancel(ref)
                tried.suspects[k] = "hung"
                tried.errors.append(f"replica {k}: no answer within cluster.step_timeout_s={self.timeout_s}")
                continue
            try:
                tried.replies[rank] = ray.get(ref, timeout=self.timeout_s)
            except NonFiniteGradientError as exc:  # Ray's task error subclasses the cause: say it plainly
                raise NonFiniteGradientError(str(getattr(exc, "cause", exc))) from None
            except ray.exceptions.RayActorError as exc:
                tried.suspects[k] = "died"
                tried.errors.append(f"replica {k}: {type(exc).__name__}")
            except ray.exceptions.RayError as exc:  # its collective broke, the step raised, or it was restarted
                tried.suspects[k] = "failed"
                tried.errors.append(f"replica {k}: {cause_line(exc)}")
        return tried

    def _ask(self, h: int, ask: Ask, sync: bool, check: bool, lost: list[int]):
        """Actor ``h``'s call for ``ask``: its own shard, and the shards of the ``lost`` actors (gone
        for good) that it takes (the next living actor after each, as in learner mode), with their images."""
        a, extra, data = self.lifecycle, [], []
        for k in lost:
            if a.host(k, 0) == h:
                units = a.data_for(k, h)
                extra.append((k, list(ask.plan[k]), len(units)))
                data.extend(units)
        return a.handles[h].replicated_step.remote(ask.step, list(ask.plan[h]), ask.lr, ask.diagnostics, sync, check,
                                                   extra, *data)  # fmt: skip

    def drop_graph(self) -> None:
        self._graph.drop()

    def compare(self, digests: list[str], when: str) -> None:
        if len(set(digests)) > 1:
            raise ReplicasDivergedError(
                f"the replicas of the meta-parameters differ {when} (weight digests {digests}); the run stops before "
                "saving any of them: resume from the last checkpoint"
            )

    def get(self, refs: list, timeout_s: float, what: str) -> list:
        import ray

        try:
            return ray.get(refs, timeout=timeout_s)
        except NonFiniteGradientError as exc:  # Ray's task error subclasses the cause: say it plainly
            raise NonFiniteGradientError(str(getattr(exc, "cause", exc))) from None
        except (ray.exceptions.RayError, RuntimeError) as exc:
            for r in refs:
                ray.cancel(r)
            raise ShardsFailedError(
                f"all-reduce mode: {what} failed ({type(exc).__name__}: {cause_line(exc)}); the run stops here with "
                "its last checkpoint kept"
            ) from None

    def close(self) -> None:
        self.drop_graph()
        self.lifecycle.close()
