"""``cluster.aggregation: allreduce``: the shard actors all-reduce their gradients and step
replicas of the meta-parameters; the result is the learner mode's and in-process's (contract 2),
on any number of actors, and a run resumes from a checkpoint across the two modes."""

import pytest
from mlflow.tracking import MlflowClient

from distmeta.tracking import names
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


def _wire_mb(result) -> dict[int, float]:
    """The logged MB per step through the learner (sent and received), by the window's last step."""
    return {m.step: m.value for m in MlflowClient(result.tracking_uri).get_metric_history(result.run_id, names.WIRE_MB)}


def test_allreduce_on_one_two_and_three_actors_equals_learner_mode_and_in_process_and_resumes_across_modes(
    workdir, ray_runtime, monkeypatch
):
    """20 steps on 1, 2 and 3 replicas against learner mode (2 actors) and in-process; the bytes
    through the learner, as logged; then one run resumed from one mode into the other and back: a
    checkpoint holds the replicas' state of its step, and either mode continues from either's."""
    asked = _counting_steps(monkeypatch)
    common = [*COMMON, "checkpoint.every_n_steps=10"]
    reference = params_of(small_run(*common, "cluster.num_shards=0"))
    learner_run = small_run(*common, "cluster.num_shards=2")
    learner = params_of(learner_run)
    assert rel_diff(learner, reference) < 1e-5 and not asked
    weights_mb = 4 * reference.numel() / 1e6
    # steps 10-14 (logged at 15): no sync. Learner mode: the weights to each actor over its local
    # channel, a gradient row per family (sine, linear) back from each
    assert _wire_mb(learner_run)[15] == pytest.approx(2 * weights_mb + 2 * 2 * weights_mb)
    synced = {}
    for n in (1, 2, 3):
        got = small_run(*common, f"cluster.num_shards={n}", "cluster.aggregation=allreduce")
        assert asked == list(range(20)), "every step went through the replicas"
        asked.clear()
        assert rel_diff(params_of(got), reference) < 1e-5, f"allreduce on {n} actors"
        wire = _wire_mb(got)
        assert wire[15] == 0.0, "nothing but metrics on an ordinary step"
        assert MlflowClient(got.tracking_uri).get_run(got.run_id).data.tags["distmeta.collective"] == "gloo"
        synced[n] = wire[10]  # steps 5-9: the sync before the step-10 validation brings rank 0's state
    assert synced[1] == synced[2] == synced[3] and synced[1] >= 3 * weights_mb / 5
    assert got.evaluation is not None and (got.checkpoint_dir / "last.ckpt").is_file()

    # one run through both modes: steps 0-9 on replicas, 10-14 in the learner, 15-19 on replicas again
    two = [*common, "cluster.num_shards=2", "checkpoint.dir=both"]
    first = small_run(*two, "cluster.aggregation=allreduce", "trainer.max_steps=10")
    middle = small_run(*two, "trainer.max_steps=15", resume="last")
    assert asked == list(range(10)) and rel_diff(params_of(middle), reference) > 1e-3
    last = small_run(*two, "cluster.aggregation=allreduce", resume="last")
    assert first.run_id == middle.run_id == last.run_id
    assert asked == list(range(10)) + list(range(15, 20)), "the replicas ran the first and the last part"
    assert rel_diff(params_of(last), reference) < 1e-5


def test_replicas_that_diverge_are_caught_before_their_state_is_used(ray_runtime):
    """The digests of the replicas' weights are compared on every step the learner syncs: one
    corrupted replica stops the run with a clear error (the learner saves nothing from them)."""
    import dataclasses

    import distmeta
    from distmeta.models import flatten
    from distmeta.recipe import Recipe
    from distmeta.shard.allreduce_group import ReplicasDivergedError
    from distmeta.shard.replica import ReplicaState
    from tests.conftest import SINE_CONFIG

    recipe = Recipe.from_config(distmeta.load_config(SINE_CONFIG, ["cluster.aggregation=allreduce", "algorithm.compile=false"]))
    group = recipe.shard_group()
    try:
        start = flatten({k: p.detach() for k, p in recipe.model().named_parameters()}).numpy()
        group.load_state(ReplicaState(steps=0, weights=start, buffers={}, optimizer={}))
        plan = recipe.learner_settings.planner.plan
        done = group.step(0, plan(0), 0.001, sync=True)
        assert done.state is not None and done.state.steps == 1 and not done.skipped
        bad = dataclasses.replace(done.state, weights=done.state.weights + 1e-6)
        ray_runtime.get(group.actors[1].load_state.remote(bad))
        group.step(1, plan(1), 0.001)  # unchecked steps do not compare
        with pytest.raises(ReplicasDivergedError, match="the replicas of the meta-parameters differ after step 2"):
            group.step(2, plan(2), 0.001, sync=True)
    finally:
        group.close()
