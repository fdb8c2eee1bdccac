"""``cluster.aggregation: allreduce``: the shard actors all-reduce their gradients and step
replicas of the meta-parameters; the result is the learner mode's and in-process's (contract 2),
on any number of actors, and a run resumes from a checkpoint across the two modes."""

import pytest

from tests.integration.helpers import params_of, rel_diff, small_run

pytestmark = [pytest.mark.ray, pytest.mark.slow]

COMMON = [
    "tasks.families=[{name: sine, weight: 2}, {name: linear}]",
    "tasks.family_weighting=uniform",
    "trainer.max_steps=20",
    "trainer.grad_clip=1.0",
    "algorithm.meta_lr=0.01",
    "cluster.cpus_per_shard=0.5",  # three actors on the fixture's two CPUs
]


def _counting_steps(monkeypatch) -> list[int]:
    """The steps the learner asked of an all-reduce group (the learner runs in this process)."""
    from distmeta.shard.allreduce_group import AllReduceShardGroup

    asked, step = [], AllReduceShardGroup.step

    def counted(self, s, *args, **kwargs):
        asked.append(s)
        return step(self, s, *args, **kwargs)

    monkeypatch.setattr(AllReduceShardGroup, "step", counted)
    return asked


def test_allreduce_on_one_two_and_three_actors_equals_learner_mode_and_in_process_and_resumes_across_modes(
    workdir, ray_runtime, monkeypatch
):
    """20 steps on 1, 2 and 3 replicas against learner mode (2 actors) and in-process; then runs
    of 10 steps resumed to 20 in the other mode: a checkpoint holds the replicas' state of its
    step, and either mode continues from either's."""
    asked = _counting_steps(monkeypatch)
    common = [*COMMON, "checkpoint.every_n_steps=10"]
    reference = params_of(small_run(*common, "cluster.num_shards=0"))
    learner = params_of(small_run(*common, "cluster.num_shards=2"))
    assert rel_diff(learner, reference) < 1e-5 and not asked
    for n in (1, 2, 3):
        got = small_run(*common, f"cluster.num_shards={n}", "cluster.aggregation=allreduce")
        assert asked == list(range(20)), "every step went through the replicas"
        asked.clear()
        assert rel_diff(params_of(got), reference) < 1e-5, f"allreduce on {n} actors"
    assert got.evaluation is not None and (got.checkpoint_dir / "last.ckpt").is_file()

    allreduce = ["cluster.aggregation=allreduce"]
    for first_mode, then_mode, folder in ((allreduce, [], "a_then_l"), ([], allreduce, "l_then_a")):
        first = small_run(*common, "cluster.num_shards=2", *first_mode, "trainer.max_steps=10", f"checkpoint.dir={folder}")
        assert rel_diff(params_of(first), reference) > 1e-3
        resumed = small_run(*common, "cluster.num_shards=2", *then_mode, f"checkpoint.dir={folder}", resume="last")
        assert resumed.run_id == first.run_id
        assert rel_diff(params_of(resumed), reference) < 1e-5, folder
    assert asked == list(range(10)) + list(range(10, 20)), "the replicas ran one half of each"
