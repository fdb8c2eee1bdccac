"""distmeta on a real two-node Ray cluster on localhost: ``distmeta submit`` through the Jobs API
(token authentication on), shards placed with ``SPREAD`` on different nodes, the run in a real
``mlflow server``; GPU scheduling with GPUs Ray advertises but CUDA does not have."""

import json
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from distmeta.tracking.records import git_tags
from tests.cluster import LocalCluster
from tests.conftest import REPO

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster()
    try:
        c.start_head(num_cpus=2, num_gpus=2)
        c.add_node(num_cpus=2)
        yield c
    finally:
        c.stop(timeout_s=3.0)  # a test cluster has nothing to save: what SIGTERM has not ended by then is killed
        assert not c.processes(), "every process of the local cluster is gone"


def distmeta(cluster: LocalCluster, *args: str, timeout_s: float = 600, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distmeta", *args], env=cluster.env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )


def job_folder(root) -> str:
    """A working directory for a job: the config, and a lock of one pin of the repo's own. The
    job's pip environment is then built from a lock on both nodes, as from the full one, at a
    fraction of the time (the full lock takes 20-30 s per node to check against what is installed)."""
    import shutil

    from distmeta.jobs import LOCK

    (root / "configs").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "sine_maml.yaml", root / "configs")
    pin = next(line for line in (REPO / LOCK).read_text().splitlines() if line.startswith("omegaconf=="))
    (root / LOCK).parent.mkdir(parents=True)
    (root / LOCK).write_text(pin + "\n")
    return str(root)


def test_submit_runs_spread_shards_on_two_nodes_and_tracks_the_run(cluster, mlflow_server, tmp_path):
    """In all-reduce mode: the replicas' collective spans the two nodes, and the job's final
    weights are the learner mode's (in-process here: the same path, tests/integration/test_allreduce.py)."""
    import torch

    from distmeta import load_config, train

    training = [
        "trainer.max_steps=20",
        "trainer.val_every_n_steps=10",
        "trainer.val_tasks=10",
        "trainer.log_every_n_steps=5",
        "trainer.progress_bar=false",
        "evaluation.num_tasks=10",
        "evaluation.shots=[10]",
        "algorithm.compile=false",
    ]
    overrides = [
        *training,
        "cluster.num_shards=2",
        "cluster.placement_strategy=SPREAD",
        "cluster.aggregation=allreduce",
        f"tracking.uri={mlflow_server}",
        "tracking.experiment=cluster_test",
        f"checkpoint.dir={tmp_path / 'ckpt'}",
    ]
    # --no-pip: the nodes hold the stack (the job's pip environment: the --no-wait test below)
    proc = distmeta(cluster, "submit", "--address", cluster.dashboard, "--no-pip", "configs/sine_maml.yaml", *overrides)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    job_id = next(line.split()[-1] for line in lines if line.startswith("submitted Ray job "))
    run_line = next(line for line in lines if line.startswith("[distmeta submit] MLflow run "))
    run_id = run_line.split()[4].rstrip(":")
    assert f"{mlflow_server}/#/experiments/" in run_line and run_line.endswith(f"/runs/{run_id}?workflowType=machine_learning")
    assert lines[-1] == f"[distmeta submit] job {job_id} SUCCEEDED"

    run = MlflowClient(mlflow_server).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["cluster.placement_strategy"] == "SPREAD"
    assert "meta/val_mse" in run.data.metrics and "test/mse.k10.mean" in run.data.metrics
    nodes = {run.data.tags["shard.0.node"], run.data.tags["shard.1.node"]}
    assert len(nodes) == 2, "SPREAD put the two shard actors on different nodes"
    assert run.data.params["cluster.aggregation"] == "allreduce" and run.data.tags["distmeta.fault.replica_resyncs"] == "0"
    # the job's copy of the checkout has no .git: the commit is the submitting checkout's
    assert run.data.tags.get("mlflow.source.git.commit") == git_tags(REPO).get("mlflow.source.git.commit")

    reference = train(load_config(REPO / "configs" / "sine_maml.yaml", [
        *training, "cluster.num_shards=0", f"tracking.uri=sqlite:///{tmp_path / 'ref.db'}", f"checkpoint.dir={tmp_path / 'ref'}",
    ]))  # fmt: skip
    state = torch.load(tmp_path / "ckpt" / run_id / "last.ckpt", weights_only=True)["state_dict"]
    got = torch.cat([state[f"model.{k}"].reshape(-1) for k, _ in reference.model.named_parameters()])
    want = torch.cat([p.detach().reshape(-1) for p in reference.model.parameters()])
    assert ((got - want).norm() / want.norm()).item() < 1e-5

    status = distmeta(cluster, "jobs", "status", job_id, "--address", cluster.dashboard)
    assert status.stdout.strip() == "SUCCEEDED"
    listed = distmeta(cluster, "jobs", "list", "--address", cluster.dashboard)
    assert job_id in listed.stdout
    logs = distmeta(cluster, "jobs", "logs", job_id, "--address", cluster.dashboard)
    assert f"distmeta: MLflow run {run_id}" in logs.stdout


def test_submit_without_the_token_is_refused(cluster):
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(cluster.token_path.parent)  # no ~/.ray/auth_token either
    proc = subprocess.run(
        [sys.executable, "-m", "distmeta", "jobs", "list", "--address", cluster.dashboard],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "token" in proc.stderr.lower(), proc.stderr


SCHEDULING = """
import json
from distmeta.algorithms import build
from distmeta.errors import UserError
from distmeta.models import ModelSpec
from distmeta.shard.actors import ActorResources
from distmeta.shard.ray_group import RayShardGroup
from distmeta.shard.spec import WorkerSpec
from distmeta.tasks import SineFamily
from distmeta.tasks.mixture import Mixture
import ray

ray.init()
spec = WorkerSpec(seed=0, families=(SineFamily(),), mixture=Mixture(("sine",), (1.0,)), model=ModelSpec("mlp", (1,), 1),
                  algorithm=build("maml"), device="cuda")
out = {}
for n, gpus in [(2, 1.0), (4, 0.5)]:
    group = RayShardGroup(spec, n, ActorResources(num_cpus=0.25, num_gpus=gpus, max_restarts=0), timeout_s=120)
    out[f"{n}x{gpus}"] = [info["gpus"] for info in group.workers_info()]
    group.close()
try:
    RayShardGroup(spec, 3, ActorResources(num_cpus=0.25, num_gpus=1.0, max_restarts=0), timeout_s=120)
except UserError as exc:
    out["3x1.0"] = str(exc)
print("RESULT " + json.dumps(out))
"""


def test_fake_gpus_are_assigned_per_shard_packed_by_fractions_and_oversubscription_fails_fast(cluster):
    proc = cluster.run_python(SCHEDULING)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    assert sorted(out["2x1.0"]) == ["0", "1"], "two whole-GPU shards get distinct GPUs"
    per_gpu = sorted(out["4x0.5"])
    assert per_gpu == ["0", "0", "1", "1"], "half-GPU shards pack two per GPU"
    assert (
        "cluster.num_shards=3 shards of {0.25 CPU, 1 GPU} each (placement PACK) need 3 GPU; the cluster has 4 CPU, 2 GPU "
        "in all, room for 2 shards"
    ) in out["3x1.0"]


def test_no_wait_returns_at_once_and_jobs_stop_ends_the_job(cluster, mlflow_server, tmp_path):
    """The address from RAY_API_SERVER_ADDRESS, as Ray's own CLI takes it; the job's pip
    environment is built from the lock it brings before its driver runs."""
    env = {**cluster.env, "RAY_API_SERVER_ADDRESS": cluster.dashboard}
    job = job_folder(tmp_path / "job")
    argv = [
        "submit",
        "--no-wait",
        "configs/sine_maml.yaml",
        "trainer.max_steps=100000",
        "algorithm.compile=false",
        f"tracking.uri={mlflow_server}",
        f"checkpoint.dir={tmp_path}",
        "trainer.progress_bar=false",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "distmeta", *argv], env=env, cwd=job, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_id = proc.stdout.split("submitted Ray job ")[1].split()[0]
    assert f"distmeta jobs logs {job_id} --follow" in proc.stdout

    def jobs(*args):
        return subprocess.run(
            [sys.executable, "-m", "distmeta", "jobs", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )

    deadline = time.time() + 180  # PENDING while Ray builds the pip environment
    while (status := jobs("status", job_id).stdout.strip()) == "PENDING" and time.time() < deadline:
        time.sleep(1)
    assert status == "RUNNING", status  # the environment was built and the driver started in it
    assert jobs("stop", job_id).returncode == 0
    deadline = time.time() + 60
    while (status := jobs("status", job_id).stdout.strip()) != "STOPPED" and time.time() < deadline:
        time.sleep(1)
    assert status == "STOPPED"
    unknown = jobs("status", "no-such-job")
    assert unknown.returncode == 2 and "job no-such-job" in unknown.stderr


NODE_LOSS_RUNS = """
import json, sys
import distmeta
from mlflow.tracking import MlflowClient
out = {}
for name in ("undisturbed", "disturbed"):  # the test takes the worker node down during the second
    result = distmeta.train(distmeta.load_config("configs/sine_maml.yaml", [*OVERRIDES, f"checkpoint.dir=CKPT/{name}"]))
    tags = MlflowClient(result.tracking_uri).get_run(result.run_id).data.tags  # the run's fault totals
    out[name] = {"params": [x for p in result.model.parameters() for x in p.detach().reshape(-1).tolist()],
                 "faults": {k.split(".")[-1]: int(v) for k, v in tags.items() if k.startswith("distmeta.fault.")}}
print("RESULT " + json.dumps(out))
"""


def test_losing_the_worker_node_mid_run_costs_nothing(cluster, tmp_path):
    """Runs last in this module: it takes the second node down. The shard on it is recomputed on
    the head's actor (its bundle is re-placed on the head or given up), and the result equals the
    same run on both nodes undisturbed."""
    overrides = [
        # the node goes after the step-20 checkpoint: well inside the run (at 150 steps, about 2 s
        # of training after it, a clean CI once saw the run end before the node was down)
        "trainer.max_steps=500",
        "algorithm.meta_batch_size=50",
        "algorithm.inner_steps=3",
        "algorithm.meta_lr=0.001",
        "algorithm.compile=false",
        "trainer.val_every_n_steps=1000",
        "trainer.log_every_n_steps=10",
        "trainer.progress_bar=false",
        "evaluation.num_tasks=10",
        "evaluation.shots=[10]",
        "checkpoint.every_n_steps=20",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "cluster.num_shards=2",
        "cluster.placement_strategy=SPREAD",
        "cluster.step_timeout_s=10",
        "cluster.address=auto",  # the cluster `ray start --head` recorded on this machine
    ]
    code = NODE_LOSS_RUNS.replace("OVERRIDES", repr(overrides)).replace("CKPT", str(tmp_path))
    # SPREAD is soft: an actor an earlier test left on the worker node (a stopped job's, ending)
    # would put both shards on the head, and the node's loss would cost nothing to begin with.
    deadline = time.time() + 60
    while cluster.actors(1) and time.time() < deadline:
        time.sleep(0.5)
    assert not cluster.actors(1), cluster.actors(1)
    driver = cluster.start_python(code, by_record=True)
    try:
        deadline = time.time() + 400
        while not list(tmp_path.glob("disturbed/*/last.ckpt")) and time.time() < deadline and driver.poll() is None:
            time.sleep(0.2)
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        assert any("ShardWorker" in title for title in cluster.actors(1)), cluster.actors(1)
        assert cluster.kill_node(1) > 0
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-4000:]
    runs = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    import torch

    got, ref = (torch.tensor(runs[name]["params"]) for name in ("disturbed", "undisturbed"))
    diff = ((got - ref).norm() / ref.norm()).item()
    assert diff < 1e-5, diff
    assert runs["undisturbed"]["faults"] and not any(runs["undisturbed"]["faults"].values())
    faults = runs["disturbed"]["faults"]
    assert faults["recomputed_tasks"] >= 25 and faults["actor_restarts"] + faults["lost_actors"] >= 1, faults
