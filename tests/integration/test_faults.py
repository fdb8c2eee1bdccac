"""Nothing lost: real processes are killed (a shard actor mid-step, the training driver) and the
numbers are compared with an undisturbed run; a NaN-producing family stops the run or is skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from distmeta.cli import main
from distmeta.tracking import names
from tests.conftest import SINE_CONFIG
from tests.integration.helpers import SMALL, KillWhileComputing, killing_an_actor, params_of, rel_diff, small_run

pytestmark = [pytest.mark.ray, pytest.mark.slow]


# long enough (a few seconds of 2-actor compute) for a process to be caught mid-step
ACTORS = [
    "trainer.max_steps=300",
    "algorithm.meta_batch_size=50",
    "algorithm.inner_steps=3",
    "cluster.num_shards=2",
    "algorithm.meta_lr=0.001",
    "trainer.val_every_n_steps=1000",
    "trainer.log_every_n_steps=10",
]


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory, ray_runtime):
    """The weights of the ACTORS run with nothing killed (computed once for the tests below)."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("undisturbed"))
    try:
        return params_of(small_run(*ACTORS))
    finally:
        os.chdir(cwd)


def test_a_shard_actor_killed_mid_step_costs_nothing(workdir, ray_runtime, undisturbed):
    result = killing_an_actor(lambda: small_run(*ACTORS))
    assert rel_diff(params_of(result), undisturbed) < 1e-5
    run = MlflowClient(result.tracking_uri).get_run(result.run_id)
    faults = {k: v for k, v in run.data.metrics.items() if k.startswith("fault/")}
    assert faults[names.FAULT_ACTOR_RESTARTS] >= 1, faults
    assert run.data.metrics[names.FAULT_RECOMPUTED_TASKS] >= 25  # the killed shard's half of a meta-batch


def test_a_hung_shard_is_recomputed_after_the_step_timeout(workdir, ray_runtime, undisturbed):
    """SIGSTOP freezes an actor mid-step: after cluster.step_timeout_s its tasks are recomputed on
    the other actor and the frozen one is killed and restarted by Ray; same result."""
    freezer = KillWhileComputing(settle_s=2.0, sig=signal.SIGSTOP)
    freezer.start()
    try:
        result = small_run(*ACTORS, "cluster.step_timeout_s=3")
    finally:
        freezer.done.set()
        if freezer.killed and psutil.pid_exists(freezer.killed):
            os.kill(freezer.killed, signal.SIGCONT)  # closing the group killed it, or let Ray reap it
    assert freezer.killed is not None, "an actor was frozen while it computed"
    assert rel_diff(params_of(result), undisturbed) < 1e-5
    faults = {
        k: v for k, v in MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics.items() if k.startswith("fault/")
    }
    assert faults[names.FAULT_FAILED_ATTEMPTS] >= 1 and faults[names.FAULT_ACTOR_RESTARTS] >= 1, faults


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_a_replica_lost_mid_step_in_allreduce_mode_is_resynced_and_costs_nothing(workdir, ray_runtime, undisturbed, sig):
    """All-reduce mode: a replica killed, or frozen past the step timeout, mid-step breaks the
    collective; the lost actor is restarted and given a survivor's state, the collective is formed
    again and the step computed again: the learner mode's undisturbed weights."""
    lost = KillWhileComputing(settle_s=2.0, sig=sig, call="ReplicaWorker.replicated_step")
    lost.start()
    try:
        result = small_run(*ACTORS, "cluster.aggregation=allreduce", "cluster.step_timeout_s=3")
    finally:
        lost.done.set()
        if sig == signal.SIGSTOP and lost.killed and psutil.pid_exists(lost.killed):
            os.kill(lost.killed, signal.SIGCONT)
    assert lost.killed is not None, "a replica was lost while it computed"
    assert rel_diff(params_of(result), undisturbed) < 1e-5
    metrics = MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    faults = {k: v for k, v in metrics.items() if k.startswith("fault/")}
    assert faults[names.FAULT_ACTOR_RESTARTS] >= 1 and faults[names.FAULT_REPLICA_RESYNCS] >= 1, faults
    assert faults[names.FAULT_FAILED_ATTEMPTS] >= 1 and faults[names.FAULT_RECOMPUTED_TASKS] >= 50, faults


BAD_MIXTURE = [
    "tasks.families=[{name: sine, weight: 200}, {name: linear, label: bad, weight: 1, ranges: {slope: [1e38, 2e38]}}]",
    "cluster.num_shards=0",
    "trainer.max_steps=30",
    "checkpoint.every_n_steps=5",
    "trainer.val_every_n_steps=1000",
    "evaluation.num_tasks=5",
    "algorithm.compile=false",
    "trainer.progress_bar=false",
]
FIRST_BAD_STEP = 18  # the first meta-step with a task of family 'bad' (slopes ~1e38 overflow float32); then 26


def test_a_non_finite_meta_gradient_stops_the_run_naming_it_and_keeps_the_last_good_checkpoint(workdir, capsys):
    assert main(["train", str(SINE_CONFIG), *BAD_MIXTURE]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"non-finite meta-gradient at step {FIRST_BAD_STEP} from shard 0 (family bad); the update was not applied and the newest checkpoint is"
        in err
    )
    (last,) = Path("checkpoints").glob("*/last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == 15
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("sine_maml").experiment_id])
    assert run.info.status == "FAILED"


def test_on_nonfinite_skip_makes_no_update_at_those_steps_and_counts_them(workdir, ray_runtime):
    """In the learner, and in all-reduce mode by every replica alike (they see the same reduced
    sums), ending at the same weights."""
    runs = {}
    for mode in ("learner", "allreduce"):
        actors = ["cluster.num_shards=1", "cluster.aggregation=allreduce"] if mode == "allreduce" else []
        result = runs[mode] = small_run(*BAD_MIXTURE, *actors, "trainer.on_nonfinite=skip", "trainer.log_every_n_steps=1")
        assert all(torch.isfinite(p).all() for p in result.model.parameters())
        history = MlflowClient(result.tracking_uri).get_metric_history(result.run_id, names.FAULT_SKIPPED_STEPS)
        assert max(m.value for m in history) == 2, mode  # steps 18 and 26
        assert torch.load(result.last_checkpoint, weights_only=True)["global_step"] == 30
    assert rel_diff(params_of(runs["allreduce"]), params_of(runs["learner"])) < 1e-5


def test_a_killed_driver_resumes_from_its_checkpoint_to_the_uninterrupted_result(workdir):
    """SIGKILL `distmeta train` mid-run, then `--resume last`: same MLflow run, same final weights;
    only the steps between the checkpoint and the kill are logged twice."""
    overrides = [
        *SMALL,
        "trainer.max_steps=400",
        "checkpoint.every_n_steps=40",
        "cluster.num_shards=0",
        "trainer.log_every_n_steps=10",
        "trainer.val_every_n_steps=100",
        "algorithm.meta_lr=0.001",
        "evaluation.num_tasks=10",
    ]
    argv = [sys.executable, "-m", "distmeta", "train", str(SINE_CONFIG), *overrides]
    proc = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not any(workdir.glob("checkpoints/*/last.ckpt")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(0.05)
        time.sleep(1.0)  # past the checkpoint: some steps are lost with the process
        assert proc.poll() is None, "the run was still going when it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    (last,) = workdir.glob("checkpoints/*/last.ckpt")
    saved_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < saved_at < 400
    resumed = small_run(*overrides[len(SMALL) :], resume="last")
    uninterrupted_dir = workdir / "uninterrupted"
    uninterrupted_dir.mkdir()
    os.chdir(uninterrupted_dir)
    reference = small_run(*overrides[len(SMALL) :])
    assert rel_diff(params_of(resumed), params_of(reference)) < 1e-5
    assert resumed.run_id == last.parent.name, "the same MLflow run continued"
    client = MlflowClient(resumed.tracking_uri)
    steps = [m.step for m in client.get_metric_history(resumed.run_id, names.meta_metric("loss"))]
    repeated = {s for s in steps if steps.count(s) > 1}
    assert all(s > saved_at for s in repeated), "only the replayed window (after the checkpoint) is logged twice"
    assert sorted(set(steps)) == list(range(10, 401, 10))
