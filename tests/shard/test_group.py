"""The Ray shard group against the in-process one, including a shard whose actor is killed."""
import pytest
import torch

from distmeta.algorithms import build
from distmeta.models import MLP, ModelSpec, flatten
from distmeta.shard.group import ActorResources, LocalShardGroup, RayShardGroup
from distmeta.shard.worker import WorkerSpec
from distmeta.tasks import SineFamily, assign

pytestmark = [pytest.mark.ray]


def _spec():
    return WorkerSpec(seed=1, family=SineFamily(), model=ModelSpec("mlp", (1,), 1, hidden=(40, 40)),
                      algorithm=build("maml", steps=1, lr=0.01), threads=1)


def test_ray_group_equals_local_and_survives_a_killed_actor(ray_runtime):
    torch.manual_seed(0)
    weights = flatten({k: p.detach() for k, p in MLP(1, (40, 40), 1).named_parameters()})
    plan = [tuple(r) for r in assign(10, 2)]
    local = LocalShardGroup(_spec()).compute(4, weights, 4, plan)
    group = RayShardGroup(_spec(), 2, ActorResources(num_cpus=1, num_gpus=0, max_restarts=2), timeout_s=60)
    try:
        remote = group.compute(4, weights, 4, plan)
        assert {info["pid"] for info in group.workers_info()} != {str(__import__("os").getpid())}
        ray_runtime.kill(group.actors[0], no_restart=False)  # Ray restarts it; its shard is recomputed
        again = group.compute(4, weights, 4, plan)
    finally:
        group.close()
    for a, b, c in zip(local, remote, again):
        assert a.shard == b.shard == c.shard and a.task_count == b.task_count
        torch.testing.assert_close(a.grad_sum, b.grad_sum, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(a.grad_sum, c.grad_sum, rtol=1e-6, atol=1e-7)
