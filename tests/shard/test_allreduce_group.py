"""The all-reduce group recovers a step whose actor was lost: the survivors go back to the state
before it (a replica that applied it rewinds), a restarted actor receives a survivor's state, or
with no survivor every replica the group's last full state and the steps since are computed
again; the replicas end with the bits an undisturbed group holds."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest
import torch

from distmeta.algorithms import build
from distmeta.models import ModelSpec
from distmeta.shard import allreduce_group
from distmeta.shard.actors import ActorResources
from distmeta.shard.allreduce_group import AllReduceShardGroup
from distmeta.shard.replica import ReplicaWorker, capture
from distmeta.shard.spec import ReplicaSpec, WorkerSpec
from distmeta.tasks import SineFamily, assign
from distmeta.tasks.mixture import Mixture

SPEC = WorkerSpec(
    seed=3,
    families=(SineFamily(),),
    mixture=Mixture(("sine",), (1.0,)),
    model=ModelSpec("mlp", (1,), 1, hidden=(20, 20)),
    algorithm=build("maml", steps=1, lr=0.01),
    threads=1,
    replica=ReplicaSpec(meta_lr=0.01, grad_clip=1.0, timeout_s=20.0),
)
STEPS, TASKS = 6, 8


def _start():
    """The learner's state at step 0, as :meth:`MetaLearner.on_train_start` loads it."""
    torch.manual_seed(0)
    model = SPEC.algorithm.meta_model(SPEC.model.build())
    return capture(model, torch.optim.Adam(model.parameters()), 0)


START = _start()


def _run(actors: int, kill_before: int | None = None, calls: str = "tasks", sig: int = 9, timeout_s: float = 20.0):
    """``STEPS`` steps on a group of ``actors``; ``kill_before``: send actor 0's process ``sig``
    (SIGKILL: Ray restarts it; SIGSTOP: it hangs, past ``timeout_s``) before that step;
    ``calls``: how the group asks for ordinary steps. Returns the final state and the fault counters."""
    import os
    import time

    import psutil

    resources = ActorResources(num_cpus=0.5, num_gpus=0, max_restarts=2)
    group = AllReduceShardGroup(SPEC, actors, resources, timeout_s=timeout_s, calls=calls)
    try:
        group.load_state(START)
        for step in range(STEPS):
            if step == kill_before:
                pid = int(group.workers_info()[0]["pid"])
                os.kill(pid, sig)
                while sig == signal.SIGKILL and psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    time.sleep(0.05)
            group.step(step, [tuple(r) for r in assign(TASKS, actors)], lr=0.01, sync=step == 2)
        return group.state(), group.faults
    finally:
        group.close()


@pytest.mark.ray
def test_a_step_whose_only_actor_died_is_replayed_to_the_undisturbed_bits(ray_runtime):
    """No survivor: the restarted replica loads the state of the last sync (step 2) and step 3 is
    computed again before step 4. (A survivor's state reaching a restarted replica mid-step is
    tests/integration/test_faults.py's.)"""
    actors = 1
    undisturbed, _ = _run(actors)
    recovered, faults = _run(actors, kill_before=4)
    np.testing.assert_array_equal(recovered.weights, undisturbed.weights)
    for k, moments in undisturbed.optimizer.items():
        for name, value in moments.items():
            np.testing.assert_array_equal(np.asarray(recovered.optimizer[k][name]), np.asarray(value), err_msg=name)
    assert recovered.steps == STEPS
    assert faults.failed_attempts == 1 and faults.actor_restarts == 1
    assert faults.replica_resyncs == 1
    assert faults.recomputed_tasks == 2 * TASKS  # step 4, and step 3 replayed


@pytest.mark.ray
def test_compiled_calls_end_at_the_tasks_bits_and_a_replica_killed_or_hung_under_them_is_recovered(
    ray_runtime, caplog, monkeypatch
):
    """Through a compiled graph (its sync step by tasks), 2 replicas end where actor tasks take
    them: a replica killed before step 4, or stopped before step 3, breaks the graph; the step is
    tried by tasks, which find the lost actor, and the usual recovery (restart, rewind, re-sync or
    replay) ends at the undisturbed bits. (Undisturbed compiled steps: tests/bench/test_scaling.py.)"""
    undisturbed, _ = _run(2)
    recovered, faults = _run(2, kill_before=4, calls="compiled")
    assert "step 4 through the compiled graph failed" in caplog.text, "the graph was driving the step that broke"
    np.testing.assert_array_equal(recovered.weights, undisturbed.weights)
    assert faults.failed_attempts == 1 and faults.actor_restarts == 1 and faults.replica_resyncs == 1
    # hung (SIGSTOP): the graph times out, the tasks name the hung actor, it is killed before the
    # graph is torn down (a teardown waits on every actor's graph loop, a stopped one forever)
    monkeypatch.setattr(allreduce_group, "GRACE_S", 1.0)
    hung, faults = _run(2, kill_before=3, calls="compiled", sig=signal.SIGSTOP, timeout_s=2.0)
    assert "step 3 through the compiled graph failed" in caplog.text
    np.testing.assert_array_equal(hung.weights, undisturbed.weights)
    assert faults.failed_attempts == 1 and faults.actor_restarts >= 1


def test_a_replica_that_applied_a_step_the_others_failed_goes_back_to_the_state_before_it():
    """Two replicas in this process (threads) step once; rewinding one of them to that step
    restores its weights and optimizer state, and the step computed again gives the same bits."""
    workers = [ReplicaWorker(k, SPEC) for k in range(2)]
    port = workers[0].host_store()
    start = workers[0].state()
    before = workers[1].load_state(start)

    def on_both(body):
        out = {}
        threads = [threading.Thread(target=lambda w=w: out.__setitem__(w.shard, body(w))) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return [out[k] for k in range(2)]

    on_both(lambda w: w.join("127.0.0.1", port, 2, 0, "127.0.0.1", w.shard))
    plan = [list(r) for r in assign(TASKS, 2)]
    first = on_both(lambda w: w.replicated_step(0, plan[w.shard], 0.01, check=True))
    assert first[0].digest == first[1].digest != before and workers[0].steps == 1
    assert workers[0].rewind(0) == before and workers[0].steps == 0
    assert workers[0].state().optimizer == {}, "Adam's moments from before its first step: none"
    with pytest.raises(RuntimeError, match="cannot go back to step 5"):
        workers[1].rewind(5)
    assert workers[1].rewind(0) == before
    again = on_both(lambda w: w.replicated_step(0, plan[w.shard], 0.01, check=True))
    assert [r.digest for r in again] == [r.digest for r in first]


@pytest.mark.ray
def test_the_learners_bytes_per_step_stay_the_same_on_1_and_3_replicas(ray_runtime):
    """Counted by the wire module (:class:`distmeta.shard.wire.Traffic`): the learner's state goes
    out once, then nothing but metrics crosses until a sync brings rank 0's state back (weights
    and Adam's two moments). Learner mode's (shards + 1) x weights: tests/shard/test_calls.py and,
    logged, tests/integration/test_allreduce.py."""
    from dataclasses import replace

    from distmeta.shard.wire import nbytes

    spec = replace(SPEC, model=ModelSpec("mlp", (1,), 1, hidden=(200, 200)))  # 163 KB of weights
    torch.manual_seed(0)
    model = spec.algorithm.meta_model(spec.model.build())
    weights = 4 * sum(p.numel() for p in model.parameters())
    start = capture(model, torch.optim.Adam(model.parameters()), 0)
    resources = ActorResources(num_cpus=0.5, num_gpus=0, max_restarts=0)
    received = {}
    for n in (1, 3):
        group = AllReduceShardGroup(spec, n, resources, timeout_s=30.0)
        try:
            group.load_state(start)
            assert group.traffic.sent == nbytes(start) and group.traffic.received == 0
            per_step = []
            for step in range(3):
                seen = group.traffic.received
                group.step(step, [tuple(r) for r in assign(TASKS, n)], lr=0.01, sync=step == 2)
                per_step.append(group.traffic.received - seen)
            assert group.traffic.sent == nbytes(start), "no weights go out after the start"
        finally:
            group.close()
        received[n] = per_step
    assert received[1] == received[3], received
    ordinary, synced = received[1][:2], received[1][2]
    assert ordinary == [0, 0] and 3 * weights <= synced < 3 * weights + 1024


@pytest.mark.ray
def test_an_actor_gone_for_good_leaves_the_collective_and_its_classes_are_computed_from_its_own_images(ray_runtime):
    """Class-partitioned glyphs on 2 replicas, restarts off: actor 0 is killed for good before
    step 2. The group goes on with actor 1 alone as rank 0 (it now hosts the store), computing
    shard 0's tasks from shard 0's images (it holds none of them itself), and ends within float
    rounding of the undisturbed group, every shard's metrics still there."""
    import ray

    import distmeta
    from distmeta.recipe import Recipe
    from tests.conftest import SINE_CONFIG

    cfg = distmeta.load_config(SINE_CONFIG, [
        "tasks.family=glyphs", "tasks.ways=3", "tasks.shots=1", "tasks.query=2", "tasks.shard_by=classes",
        "tasks.class_partitions=2", "model.name=conv4", "model.filters=8", "algorithm.meta_batch_size=6",
        "algorithm.compile=false", "cluster.num_shards=2", "cluster.aggregation=allreduce",
        "cluster.max_actor_restarts=0", "cluster.step_timeout_s=10",
    ])  # fmt: skip
    recipe = Recipe(cfg)
    torch.manual_seed(0)
    model = recipe.model()
    start = capture(model, torch.optim.Adam(model.parameters()), 0)
    planner = recipe.learner_settings.planner

    def run(kill_before=None):
        group = recipe.shard_group()
        try:
            assert group.lifecycle.data[0] != group.lifecycle.data[1], "each actor holds its own classes"
            group.load_state(start)
            for step in range(5):
                if step == kill_before:
                    ray.kill(group.actors[0], no_restart=True)
                done = group.step(step, planner.plan(step), lr=0.001)
            assert [r.shard for r in done.results] == [0, 1] and all(r.task_count for r in done.results)
            return group.state(), group.faults, group.members
        finally:
            group.close()

    undisturbed, _, _ = run()
    shrunk, faults, members = run(kill_before=2)
    assert members == [1] and faults.lost_actors == 1 and faults.failed_attempts == 1
    np.testing.assert_allclose(shrunk.weights, undisturbed.weights, rtol=1e-5, atol=1e-7)
    assert not np.array_equal(shrunk.weights, start.weights)
