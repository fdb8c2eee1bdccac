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
group hands its address to every actor through Ray calls. Recovering from a lost actor (tear the
collective down, restart it, copy a survivor's state, rebuild the group, recompute the step) is
not wired yet: a failed step stops the run with its last checkpoint kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from distmeta.errors import NonFiniteGradientError, ShardsFailedError
from distmeta.shard.actors import ActorResources, ShardActors
from distmeta.shard.aggregate import Combined
from distmeta.shard.replica import ReplicaState, ReplicaWorker, StepReply
from distmeta.shard.result import ShardResult
from distmeta.shard.worker import ShardData, WorkerSpec

CHECK_EVERY = 100
"""Steps between comparisons of the replicas' weight digests (besides every step that syncs)."""


class ReplicasDivergedError(RuntimeError):
    """The replicas of the meta-parameters no longer hold the same weights."""


@dataclass(frozen=True)
class ReplicatedStep:
    """One step as the learner sees it in all-reduce mode: every shard's metrics, what the
    replicas' combination measured, whether they skipped the update, the slowest replica's seconds
    reducing and applying, and rank 0's state when the learner asked for it."""

    results: list[ShardResult]
    combined: Combined
    skipped: bool
    reduce_seconds: float
    apply_seconds: float
    state: ReplicaState | None


class AllReduceShardGroup:
    replicated = True
    """The learner sends steps, not weights, and loads the replicas' state when it needs it."""

    def __init__(self, spec: WorkerSpec, num_shards: int, resources: ActorResources, timeout_s: float,
                 shard_data: Sequence[ShardData] = (), check_every: int = CHECK_EVERY):  # fmt: skip
        if spec.replica is None:
            raise ValueError("all-reduce mode needs WorkerSpec.replica")
        self.num_shards, self.timeout_s, self.check_every = num_shards, timeout_s, check_every
        self._actors = ShardActors(spec, num_shards, resources, timeout_s, shard_data, local_channel=False,
                                   worker_class=ReplicaWorker)  # fmt: skip
        self.faults = self._actors.faults
        self.generation = 0
        try:
            self._form()
        except BaseException:
            self._actors.close()
            raise

    @property
    def actors(self) -> list:
        return list(self._actors.handles)

    def workers_info(self):
        return list(self._actors.info)

    def _form(self) -> None:
        """Rank 0 starts the store; every actor joins this generation of the collective."""
        import ray

        a = self._actors
        port = ray.get(a.handles[0].host_store.remote(), timeout=a.start_s)
        host = a.info[0]["ip"]
        joins = [h.join.remote(host, port, self.num_shards, self.generation, info["ip"]) for h, info in zip(a.handles, a.info)]
        self._get(joins, a.start_s, "forming the collective group")

    def load_state(self, state: ReplicaState) -> None:
        """Every replica becomes ``state`` (the learner's, at the start of training or a resume)."""
        import ray

        ref = ray.put(state)
        digests = self._get([h.load_state.remote(ref) for h in self._actors.handles], self._actors.start_s, "loading")
        self._compare(digests, f"after loading the state of step {state.steps}")

    def state(self) -> ReplicaState:
        """Rank 0's state."""
        return self._get([self._actors.handles[0].state.remote()], self.timeout_s, "reading the state")[0]

    def step(self, step: int, plan: Sequence[Sequence[int]], lr: float, diagnostics: bool = True,
             sync: bool = False) -> ReplicatedStep:  # fmt: skip
        """Meta-step ``step`` on every replica; ``sync``: with rank 0's state after it."""
        check = sync or (step + 1) % self.check_every == 0
        handles = self._actors.handles
        plan = list(plan) + [()] * (len(handles) - len(plan))
        refs = [h.replicated_step.remote(step, list(plan[k]), lr, diagnostics, sync, check) for k, h in enumerate(handles)]
        replies: list[StepReply] = self._get(refs, self.timeout_s, f"step {step}")
        if check:
            self._compare([r.digest for r in replies], f"after step {step}")
        first = replies[0]
        return ReplicatedStep(
            [r.result for r in replies], first.combined, first.skipped, max(r.reduce_seconds for r in replies),
            max(r.apply_seconds for r in replies), first.state,
        )  # fmt: skip

    def _compare(self, digests: list[str], when: str) -> None:
        if len(set(digests)) > 1:
            raise ReplicasDivergedError(
                f"the replicas of the meta-parameters differ {when} (weight digests {digests}); the run stops before "
                "saving any of them: resume from the last checkpoint"
            )

    def _get(self, refs: list, timeout_s: float, what: str) -> list:
        import ray

        try:
            return ray.get(refs, timeout=timeout_s)
        except NonFiniteGradientError as exc:  # Ray's task error subclasses the cause: say it plainly
            raise NonFiniteGradientError(str(getattr(exc, "cause", exc))) from None
        except (ray.exceptions.RayError, RuntimeError) as exc:
            for r in refs:
                ray.cancel(r)
            raise ShardsFailedError(
                f"all-reduce mode: {what} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); recovering a "
                "lost replica is not wired yet, so the run stops here with its last checkpoint kept"
            ) from None

    def close(self) -> None:
        self._actors.close()
