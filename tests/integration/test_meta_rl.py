"""Meta-RL through the whole stack: navigation2d's rollouts collected by the shard actors that
own the tasks, the same policy on any number of actors, nothing lost when an actor dies mid
rollout, and the run's returns and environment throughput in MLflow."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

import distmeta
from distmeta.tracking import names
from tests.conftest import REPO
from tests.integration.helpers import SMALL, killing_an_actor, params_of, rel_diff

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NAVIGATION = REPO / "configs/navigation2d_maml.yaml"
TINY = [
    *SMALL,
    "algorithm.meta_batch_size=8",
    "tasks.shots=8",
    "tasks.query=8",
    "model.hidden=[32,32]",
    "trainer.val_every_n_steps=1000",
    "trainer.val_tasks=4",
    "evaluation.num_tasks=8",
    "evaluation.steps=[0,1]",
]


def navigation_run(*overrides: str) -> distmeta.TrainResult:
    return distmeta.train(distmeta.load_config(NAVIGATION, [*TINY, *overrides]))


def test_five_meta_iterations_give_the_same_policy_in_process_and_on_one_and_two_actors(workdir, ray_runtime):
    runs = {n: navigation_run("trainer.max_steps=5", f"cluster.num_shards={n}") for n in (0, 1, 2)}
    reference = params_of(runs[0])
    start = params_of(navigation_run("trainer.max_steps=1", "cluster.num_shards=0", "algorithm.meta_lr=1e-9"))
    assert rel_diff(reference, start) > 1e-3  # the five steps moved the policy
    for n in (1, 2):
        assert rel_diff(params_of(runs[n]), reference) < 1e-5, f"num_shards={n}"

    run = MlflowClient(runs[2].tracking_uri).get_run(runs[2].run_id)
    metrics = run.data.metrics
    for key in ("preadapt_return", "adapted_return", "adaptation_gain", "entropy", "kl", "baseline_error"):
        assert names.meta_metric(key) in metrics, key
    gain = metrics["meta/adaptation_gain"]
    assert gain == pytest.approx(metrics["meta/adapted_return"] - metrics["meta/preadapt_return"], abs=1e-4)
    # throughput counted in environment steps (each task: 8 episodes before and 8 after one inner step, 100 steps each)
    assert metrics[names.THROUGHPUT_ENV_STEPS_PER_S] > 0
    assert names.THROUGHPUT_TASKS_PER_S not in metrics
    assert {names.shard_env_steps_per_s(k) for k in (0, 1)} <= set(metrics)
    assert "test/return.k8.mean" in metrics
    history = MlflowClient(runs[2].tracking_uri).get_metric_history(runs[2].run_id, "test/return.k8.mean")
    assert sorted(m.step for m in history) == [0, 1]  # the adaptation curve, stepped by adaptation steps
    assert "tasks.x_range" not in run.data.params and "algorithm.rl.discount" in run.data.params
    figures = {a.path for a in MlflowClient(runs[2].tracking_uri).list_artifacts(runs[2].run_id, "eval")}
    assert {"eval/adaptation_curve.png", "eval/paths_navigation2d.png"} <= figures


def test_a_shard_actor_killed_mid_rollout_is_recomputed_with_the_same_trajectories(workdir, ray_runtime):
    """Every task's environment resets and action noise come from its own key: the restarted
    actor (or the survivor) collects the same episodes, and the policy ends where it would have."""
    long = ["trainer.max_steps=40", "cluster.num_shards=2", "algorithm.meta_batch_size=16", "tasks.shots=16", "tasks.query=16"]
    undisturbed = params_of(navigation_run(*long))
    result = killing_an_actor(lambda: navigation_run(*long))
    assert rel_diff(params_of(result), undisturbed) < 1e-5
    metrics = MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert metrics[names.FAULT_RECOMPUTED_TASKS] >= 8  # the killed shard's half of a meta-batch


def test_promp_epochs_give_the_same_policy_on_any_number_of_actors_and_survive_a_killed_one(workdir, ray_runtime):
    """ProMP's epochs: each a round of calls at new weights over the trajectories the shards kept
    from the first; in-process, on 1 and on 2 actors the same policy. An actor SIGKILLed mid-step
    is restarted without them: the shard collects them again at the step's first weights."""
    promp = ["algorithm.name=promp_rl", "algorithm.rl.epochs=3", "trainer.log_every_n_steps=1"]
    runs = {n: navigation_run(*promp, "trainer.max_steps=3", f"cluster.num_shards={n}") for n in (0, 1, 2)}
    reference = params_of(runs[0])
    for n in (1, 2):
        assert rel_diff(params_of(runs[n]), reference) < 1e-5, f"num_shards={n}"
    metrics = MlflowClient(runs[2].tracking_uri).get_run(runs[2].run_id).data.metrics
    assert metrics["meta/outer_kl"] > 0 and "meta/clip_fraction" in metrics  # the last epoch's, away from theta_o

    long = [*promp, "trainer.max_steps=12", "cluster.num_shards=2"]
    undisturbed = params_of(navigation_run(*long))
    result = killing_an_actor(lambda: navigation_run(*long))
    assert rel_diff(params_of(result), undisturbed) < 1e-5


def test_halfcheetah_direction_trains_end_to_end_on_two_actors(workdir, ray_runtime):
    """MuJoCo through the whole stack: a few meta-steps of the cluster config, shrunk, on 2 actors."""
    small = ["trainer.max_steps=3", "cluster.num_shards=2", "algorithm.meta_batch_size=4", "tasks.shots=2", "tasks.query=2",
             "model.hidden=[32,32]", "trainer.val_every_n_steps=1000", "trainer.val_tasks=2", "evaluation.num_tasks=4",
             "evaluation.steps=[0,1]", "trainer.log_every_n_steps=1", *SMALL]  # fmt: skip
    result = distmeta.train(distmeta.load_config(REPO / "configs/halfcheetah_dir_promp.yaml", small))
    run = MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics[names.THROUGHPUT_ENV_STEPS_PER_S] > 0 and "meta/adapted_return" in metrics
    assert {"test/return.k2.mean", "test/return.k2.ci95"} <= set(metrics)
    figures = {a.path for a in MlflowClient(result.tracking_uri).list_artifacts(result.run_id, "eval") if a.path.endswith(".png")}
    assert figures == {"eval/adaptation_curve.png"}  # a cheetah's observations are not positions in the plane
