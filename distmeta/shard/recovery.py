"""Recovering an all-reduce step that failed: nothing of it is lost, and every replica ends at
the weights an undisturbed run would hold.

After a failed attempt at step ``s`` (:meth:`AllReduceShardGroup.attempt`):

1. the actors that died or hung are restarted (a hung one is killed first; Ray restarts it within
   ``cluster.max_actor_restarts``): :meth:`ShardActors.check`, as in learner mode. Every actor
   that did not answer is checked: one Ray restarted between steps answers the next step with
   an error (it has not joined the collective), not as dead;
2. the survivors go back to the state before ``s`` (:meth:`ReplicaWorker.rewind`: one whose
   reduction completed may have applied it);
3. the restarted actors receive a survivor's state (weights, buffers, optimizer), passed from
   actor to actor through Ray's object store; with no survivor, every replica loads the group's
   last full state and the steps asked since are computed again (a pure function of the state,
   the step and its plan: the same bits);
4. a new generation of the collective is formed (a new store on rank 0), the digests compared.

The group then computes ``s`` again. An actor that cannot be restarted (``max_actor_restarts``
spent, or no resources left for it: its node is gone) leaves the collective: the group shrinks to
the living actors, ranked in shard order, and the next living actor after it computes its shard
from then on, with that shard's own images (class or family partitions stay where the plan put
them). Its tasks are summed into that replica's rows before the reduction: the same sums in
another order, so the run continues within float rounding of the undisturbed one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from distmeta.errors import ShardsFailedError

if TYPE_CHECKING:
    from distmeta.shard.allreduce_group import AllReduceShardGroup

log = logging.getLogger(__name__)


def recover(group: AllReduceShardGroup, step: int, suspects: dict[int, str]) -> None:
    """Make every replica hold the state before ``step`` again, in a new collective; ``suspects``:
    the actors that did not answer, by rank (``died``, ``hung`` or ``failed``)."""
    actors = group.lifecycle
    pids = [info.get("pid") for info in actors.info]
    before = group.members
    actors.check(suspects)
    group.drop_graph()  # after the check: a hung actor is killed, so the teardown does not wait on it
    members = group.members
    if not members:
        raise ShardsFailedError(
            "all-reduce mode: every shard actor is gone for good (cluster.max_actor_restarts spent, or no resources "
            "to restart them); the run stops with its last checkpoint kept"
        )
    if len(members) < len(before):
        log.warning("all-reduce mode: shard actor(s) %s gone for good; the collective goes on with %d replicas, "
                    "their shards computed by the next living actor", sorted(set(before) - set(members)), len(members))  # fmt: skip
    handles = actors.handles
    fresh = [k for k in members if actors.info[k].get("pid") != pids[k]]  # new processes
    survivors = [k for k in members if k not in fresh]
    digests = group.get([handles[k].rewind.remote(step) for k in survivors], actors.start_s, f"rewinding to step {step}")
    group.generation += 1
    group.form()
    if not survivors:
        _replay(group, step)
        return
    source = handles[survivors[0]].state.remote()  # resolved in the object store, not by the learner
    digests += group.get([handles[k].load_state.remote(source) for k in fresh], actors.start_s, "re-syncing replicas")
    group.faults.replica_resyncs += len(fresh)
    group.compare(digests, f"after re-syncing the replicas for step {step}")


def _replay(group: AllReduceShardGroup, step: int) -> None:
    """No replica survived: every one loads the group's last full state and the steps asked
    since are computed again, unlogged."""
    held, asked = group.held, list(group.asked)
    if held is None or held.steps + len(asked) != step:
        raise ShardsFailedError(
            f"all-reduce mode: no replica survived step {step} and the group holds no state to replay it from; the "
            "run stops with its last checkpoint kept"
        )
    group.load_state(held)
    group.faults.replica_resyncs += len(group.members)
    for ask in asked:
        tried = group.attempt(ask)
        if tried.errors:
            raise ShardsFailedError(f"all-reduce mode: replaying step {ask.step} failed: {'; '.join(tried.errors)}")
        group.faults.recomputed_tasks += sum(len(p) for p in ask.plan)
    group.asked = asked
