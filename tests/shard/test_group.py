"""The Ray shard group against the in-process one, including a shard whose actor is killed."""

import time

import pytest
import torch

from distmeta.algorithms import build
from distmeta.models import MLP, ModelSpec, flatten
from distmeta.shard.actors import ActorResources
from distmeta.shard.group import LocalShardGroup
from distmeta.shard.ray_group import RayShardGroup
from distmeta.shard.spec import WorkerSpec
from distmeta.tasks import SineFamily, assign
from distmeta.tasks.mixture import Mixture
from tests.shard.helpers import compute, grad_sum

pytestmark = [pytest.mark.ray]


def _spec():
    return WorkerSpec(
        seed=1,
        families=(SineFamily(),),
        mixture=Mixture(("sine",), (1.0,)),
        model=ModelSpec("mlp", (1,), 1, hidden=(40, 40)),
        algorithm=build("maml", steps=1, lr=0.01),
        threads=1,
    )


def _kill(ray, group, h: int, restart: bool) -> None:
    """Kill actor ``h`` and wait until its process is gone: a process still alive would answer
    on its local channel (correctly: nothing to recompute)."""
    import psutil

    pid = int(group.workers_info()[h]["pid"])
    ray.kill(group.actors[h], no_restart=not restart)
    deadline = time.time() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
        time.sleep(0.05)


def test_ray_group_equals_local_and_survives_a_killed_actor(ray_runtime):
    torch.manual_seed(0)
    weights = flatten({k: p.detach() for k, p in MLP(1, (40, 40), 1).named_parameters()})
    plan = [tuple(r) for r in assign(10, 2)]
    local = compute(LocalShardGroup(_spec()), 4, weights, 4, plan)
    group = RayShardGroup(_spec(), 2, ActorResources(num_cpus=1, num_gpus=0, max_restarts=2), timeout_s=60)
    try:
        remote = compute(group, 4, weights, 4, plan)
        assert {info["pid"] for info in group.workers_info()} != {str(__import__("os").getpid())}
        _kill(ray_runtime, group, 0, restart=True)  # Ray restarts it; its shard is recomputed
        again = compute(group, 4, weights, 4, plan)
    finally:
        group.close()
    for a, b, c in zip(local, remote, again):
        assert a.shard == b.shard == c.shard and a.task_count == b.task_count
        torch.testing.assert_close(grad_sum(a), grad_sum(b), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(grad_sum(a), grad_sum(c), rtol=1e-6, atol=1e-7)


def _image_spec():
    from distmeta.tasks import EpisodeFamily

    return WorkerSpec(
        seed=2,
        families=(EpisodeFamily("glyphs", ways=3, shots=1, query=2),),
        mixture=Mixture(("glyphs",), (1.0,)),
        model=ModelSpec("mlp", (1, 28, 28), 3, hidden=(8,)),
        algorithm=build("maml", loss="cross_entropy", lr=0.1),
        threads=1,
    )


def test_class_partitioned_shards_keep_their_classes_through_a_lost_actor(ray_runtime):
    """Each actor holds and computes only its class partitions; a shard recomputed on another
    actor brings its images along (an object-store reference), so the step's result does not
    change, and equals the in-process group holding every partition."""
    from dataclasses import replace

    from distmeta.tasks import GlyphSource
    from distmeta.tasks.sharding import Planner

    images = GlyphSource().load("val")
    parts = [images.partition(k, 2) for k in range(2)]
    assert not set(parts[0].names) & set(parts[1].names) and len(parts[0].names) + len(parts[1].names) == images.num_classes
    spec = replace(_image_spec(), partitions=2)
    torch.manual_seed(0)
    weights = flatten({k: p.detach() for k, p in spec.model.build().named_parameters()})
    plan = Planner(8, 2, "classes", spec.mixture, seed=spec.seed, partitions=2).plan(3)
    assert all(plan) and plan != [list(range(4)), list(range(4, 8))]  # tasks follow their partition's owner
    expected = compute(LocalShardGroup(spec, tuple(parts)), 3, weights, 3, plan)
    owned = [(parts[0], None), (None, parts[1])]
    group = RayShardGroup(spec, 2, ActorResources(num_cpus=1, num_gpus=0, max_restarts=0), timeout_s=60, shard_data=owned)
    try:
        assert [ray_runtime.get(a.families_with_images.remote()) for a in group.actors] == [["glyphs"], ["glyphs"]]
        first = compute(group, 3, weights, 3, plan)
        _kill(ray_runtime, group, 0, restart=False)  # shard 0 must be recomputed on actor 1
        again = compute(group, 3, weights, 3, plan)
    finally:
        group.close()
    assert group.faults.recomputed_tasks == len(plan[0])
    for exp, a, b in zip(expected, first, again):
        torch.testing.assert_close(grad_sum(a), grad_sum(exp), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(grad_sum(b), grad_sum(exp), rtol=1e-6, atol=1e-7)
    swapped = compute(LocalShardGroup(spec, (parts[1], parts[0])), 3, weights, 3, plan)  # the classes matter
    assert not torch.allclose(grad_sum(expected[0]), grad_sum(swapped[0]))


def test_shared_images_are_put_in_the_object_store_once(ray_runtime):
    from distmeta.tasks import GlyphSource

    shared = (GlyphSource().load("val"),)  # one family's images, the same object for both shards
    group = RayShardGroup(
        _image_spec(), 2, ActorResources(num_cpus=1, num_gpus=0, max_restarts=0), timeout_s=60, shard_data=[shared, shared]
    )
    try:
        assert group.data_refs[0][0] is group.data_refs[1][0]
    finally:
        group.close()


def test_under_shard_by_family_each_actor_computes_only_its_families(ray_runtime):
    from distmeta.tasks import FunctionFamily
    from distmeta.tasks.sharding import Planner

    mixture = Mixture(("sine", "linear", "quadratic"), (1.0, 1.0, 1.0))
    spec = WorkerSpec(
        seed=1,
        families=(SineFamily(), FunctionFamily("linear"), FunctionFamily("quadratic")),
        mixture=mixture,
        model=ModelSpec("mlp", (1,), 1, hidden=(8,)),
        algorithm=build("maml", steps=1, lr=0.01),
        threads=1,
    )
    torch.manual_seed(0)
    weights = flatten({k: p.detach() for k, p in spec.model.build().named_parameters()})
    planner = Planner(24, 2, "family", mixture, seed=1)
    group = RayShardGroup(spec, 2, ActorResources(num_cpus=1, num_gpus=0, max_restarts=0), timeout_s=60)
    try:
        for step in range(3):
            results = compute(group, step, weights, step, planner.plan(step))
            owned = {0: {"sine", "quadratic"}, 1: {"linear"}}  # 3 families over 2 shards: f % 2
            for r in results:
                assert set(r.family_counts) <= owned[r.shard], (step, r.shard, r.family_counts)
            assert sum(r.task_count for r in results) == 24
            local = compute(LocalShardGroup(spec), step, weights, step, [list(range(24))])[0]
            total = sum((grad_sum(r) for r in results), torch.zeros_like(weights))
            torch.testing.assert_close(total, grad_sum(local), rtol=1e-5, atol=1e-6)
    finally:
        group.close()
