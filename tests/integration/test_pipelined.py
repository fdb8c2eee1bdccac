"""``trainer.staleness: 1``: step s+1's meta-gradient is computed at step s's weights while step s
is applied. Checked against the same recursion written by hand, across shard layouts, and
across a resume."""

import pytest
import torch

import distmeta
from distmeta import checkpoints
from distmeta.models import flatten, unflatten
from distmeta.recipe import Recipe
from distmeta.shard.aggregate import aggregate
from tests.conftest import SINE_CONFIG
from tests.integration.helpers import SMALL, params_of, rel_diff, small_run
from tests.shard.helpers import compute

pytestmark = [pytest.mark.ray, pytest.mark.slow]

COMMON = ["algorithm.meta_lr=0.01", "trainer.staleness=1"]


def _by_hand(steps: int, compensation: float) -> torch.Tensor:
    """theta_{s+1} = Adam(theta_s, g_s), with g_0 = grad(theta_0) and g_s = grad(theta_{s-1})
    (+ lambda g*g*(theta_s - theta_{s-1})), from the worker's meta-gradient and torch's Adam."""
    cfg = distmeta.load_config(SINE_CONFIG, [*SMALL, *COMMON, "cluster.num_shards=0", f"trainer.max_steps={steps}"])
    recipe = Recipe.from_config(cfg)
    model = recipe.model()
    group = recipe.shard_group()
    planner = recipe.learner_settings.planner
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.algorithm.meta_lr, fused=True)  # as the learner
    previous = None
    for s in range(steps):
        now = flatten({k: p.detach() for k, p in params.items()}).clone()
        at = now if previous is None else previous
        g = aggregate(compute(group, s, at, s, planner.plan(s)), step=s, version=s).grad
        g = g + compensation * g * g * (now - at)
        for name, t in unflatten(g, params).items():
            params[name].grad = t
        opt.step()
        previous = now
    return flatten({k: p.detach() for k, p in params.items()})


@pytest.mark.parametrize("compensation", [0.0, 2.0])
def test_pipelined_training_is_the_stale_recursion_in_process_and_on_two_actors(compensation, workdir, ray_runtime):
    common = [*COMMON, "trainer.max_steps=12", f"trainer.delay_compensation={compensation}"]
    expected = _by_hand(12, compensation)
    in_process = params_of(small_run(*common, "cluster.num_shards=0"))
    two_actors = params_of(small_run(*common, "cluster.num_shards=2"))
    synchronous = params_of(small_run("algorithm.meta_lr=0.01", "trainer.max_steps=12", "cluster.num_shards=0"))
    assert rel_diff(in_process, expected) < 1e-5
    assert rel_diff(two_actors, expected) < 1e-5
    assert rel_diff(synchronous, expected) > 1e-4  # staleness changed the trajectory: the check means something


def test_pipelined_run_resumed_from_step_10_equals_uninterrupted_20(workdir, ray_runtime):
    common = [*COMMON, "cluster.num_shards=0", "checkpoint.every_n_steps=5", "trainer.delay_compensation=2.0"]
    full = small_run(*common, "trainer.max_steps=20", "checkpoint.dir=full")
    first = small_run(*common, "trainer.max_steps=10", "checkpoint.dir=parts")
    saved = checkpoints.read(first.last_checkpoint)  # the end of a run keeps how step 10 would be asked
    assert (saved["global_step"], saved["distmeta_next"]["step"], saved["distmeta_next"]["version"]) == (10, 10, 9)
    resumed = small_run(*common, "trainer.max_steps=20", "checkpoint.dir=parts", resume="last")
    assert rel_diff(params_of(resumed), params_of(full)) < 1e-5
