"""Contract 2: the meta-parameters after k steps do not depend on where the meta-batch ran."""
import time

import pytest

from tests.integration.helpers import params_of, rel_diff, small_run

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_in_process_one_and_two_actors_agree_after_20_steps(algorithm, workdir, ray_runtime):
    common = ["trainer.max_steps=20", f"algorithm.name={algorithm}", "algorithm.meta_lr=0.01"]
    results = {n: small_run(*common, f"cluster.num_shards={n}") for n in (0, 1, 2)}
    reference = params_of(results[0])
    start = params_of(small_run("trainer.max_steps=1", "cluster.num_shards=0", "algorithm.meta_lr=1e-9"))
    assert rel_diff(reference, start) > 1e-3  # training moved the weights: the comparison means something
    for n in (1, 2):
        assert rel_diff(params_of(results[n]), reference) < 1e-5, f"num_shards={n}"
    assert (results[2].checkpoint_dir / "last.ckpt").is_file()
    deadline = time.time() + 20  # killed actors hand their CPUs back asynchronously
    while ray_runtime.available_resources().get("CPU") != 2.0 and time.time() < deadline:
        time.sleep(0.2)
    assert ray_runtime.available_resources().get("CPU") == 2.0, "shard actors were released after fit"


MIXTURE = ["tasks.families=[{name: sine, weight: 2}, {name: linear}]", "trainer.max_steps=20", "algorithm.meta_lr=0.01"]


@pytest.mark.parametrize("weighting", ["count", "uniform"])
def test_mixture_by_family_on_two_actors_equals_by_tasks_on_one_and_in_process(weighting, workdir, ray_runtime):
    """Same task stream, same aggregation: who owns which family does not change the result."""
    common = [*MIXTURE, f"tasks.family_weighting={weighting}"]
    by_family = params_of(small_run(*common, "tasks.shard_by=family", "cluster.num_shards=2"))
    by_tasks = params_of(small_run(*common, "tasks.shard_by=tasks", "cluster.num_shards=1"))
    in_process = params_of(small_run(*common, "tasks.shard_by=family", "cluster.num_shards=0"))
    sine_only = params_of(small_run("trainer.max_steps=20", "algorithm.meta_lr=0.01", "cluster.num_shards=0"))
    assert rel_diff(in_process, sine_only) > 1e-3  # the mixture is not the sine run under another name
    assert rel_diff(by_family, in_process) < 1e-5
    assert rel_diff(by_tasks, in_process) < 1e-5
