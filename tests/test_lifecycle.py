"""A run's way out, as a user meets it: signals from a shell, ``timeout``, Kubernetes, systemd or
Slurm (to the process or its whole group), during Ray's start-up and mid-training, and runs
started at once on a store that does not exist yet."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from distmeta.cli import main
from tests.conftest import SINE_CONFIG

pytestmark = [pytest.mark.slow]

TRAIN = [
    str(SINE_CONFIG),
    "trainer.max_steps=100000",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=20",
    "trainer.val_every_n_steps=100000",
    "checkpoint.every_n_steps=100000",
    "algorithm.compile=false",
    "evaluation.num_tasks=4",
]
STOPPED = re.compile(r"stopped by (SIG\w+) at step (\d+); checkpoint (\S+) holds that step")


def _cli(workdir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "distmeta", *args],
        cwd=workdir,
        env=env,
        start_new_session=True,  # its own process group, as a shell's job or a container's
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _runs(workdir: Path) -> list:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def _until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _training(workdir: Path) -> bool:
    """The run has logged its first training metrics. Read-only, straight from sqlite: opening the
    store through MLflow while the run creates it would be a second creator."""
    db = workdir / "mlflow.db"
    if not db.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            return con.execute("SELECT COUNT(*) FROM metrics WHERE key = 'meta/loss'").fetchone()[0] > 0
    except sqlite3.Error:  # tables not made yet
        return False


def _left_behind(proc: subprocess.Popen) -> list[str]:
    """Processes of the run's session still alive (Ray's own included)."""
    alive = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if os.getsid(p.pid) == proc.pid and p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.info['name']} ({p.pid})")
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


@pytest.mark.ray
def test_sigterm_to_the_process_group_mid_training_checkpoints_that_step_and_resume_continues(workdir, capsys):
    proc = _cli(workdir, "train", *TRAIN)  # two shard actors on Ray in-process: the default
    try:
        _until(lambda: _training(workdir), 240, "training to start")
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)  # Ray's own processes get it too
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert took < 10, f"exited {took:.1f} s after SIGTERM"
    found = STOPPED.search(" ".join(err.split()))
    assert found and found.group(1) == "SIGTERM", err[-3000:]
    step, checkpoint = int(found.group(2)), Path(found.group(3))
    assert step >= 20 and torch.load(checkpoint, weights_only=True)["global_step"] == step
    (run,) = _runs(workdir)
    assert run.info.status == "KILLED"
    assert "Traceback" not in err and f"--resume {checkpoint}" in " ".join(err.split())
    _until(lambda: not _left_behind(proc), 10, f"the run's processes to exit: {_left_behind(proc)}")

    resumed = ["trainer.max_steps=" + str(step + 3), "cluster.num_shards=0", "--resume", "last"]
    assert main(["train", *TRAIN, *resumed]) == 0
    assert torch.load(checkpoint, weights_only=True)["global_step"] == step + 3
    (run,) = _runs(workdir)
    assert run.info.status == "FINISHED" and max(m.step for m in _history(workdir, run)) >= step


def _history(workdir: Path, run) -> list:
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_metric_history(run.info.run_id, "meta/loss")


def test_sigint_mid_training_stops_at_the_step_boundary_with_exit_130(workdir, capsys):
    """In this process, shards in-process: Ctrl-C stops the loop after the step in progress."""

    def interrupt() -> None:
        _until(lambda: _training(workdir), 240, "training to start")
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    assert main(["train", *TRAIN, "cluster.num_shards=0"]) == 130
    thread.join(timeout=5)
    err = " ".join(capsys.readouterr().err.split())
    found = STOPPED.search(err)
    assert found and found.group(1) == "SIGINT", err
    assert torch.load(found.group(3), weights_only=True)["global_step"] == int(found.group(2)) >= 20
    (run,) = _runs(workdir)
    assert run.info.status == "KILLED"


@pytest.mark.ray
def test_ctrl_c_during_ray_start_up_stops_before_any_run_exists(workdir):
    proc = _cli(workdir, "train", *TRAIN)

    def ray_starting() -> bool:
        return any(c.name() == "gcs_server" for c in psutil.Process(proc.pid).children(recursive=True))

    try:
        _until(ray_starting, 240, "Ray to start")
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "stopped by SIGINT before training started; nothing was written" in " ".join(err.split())
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert took < 20, f"exited {took:.1f} s after SIGINT"  # Ray's start-up finishes first
    assert not (workdir / "mlflow.db").exists() or not _runs(workdir), "no run was made"
    assert not list(workdir.glob("checkpoints/*"))
    _until(lambda: not _left_behind(proc), 10, f"the run's processes to exit: {_left_behind(proc)}")


def test_a_second_ctrl_c_exits_at_once(workdir):
    proc = _cli(workdir, "train", *TRAIN, "cluster.num_shards=0")
    try:
        _until(lambda: _training(workdir), 240, "training to start")
        os.kill(proc.pid, signal.SIGINT)
        while "stopping at the next safe point" not in proc.stderr.readline():
            pass  # the first one is taken: a second one now is a second one, not a merged pending signal
        os.kill(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130 and "second SIGINT: exiting now" in err, err[-2000:]
    assert took < 3


@pytest.mark.new_store
def test_three_runs_started_at_once_on_a_new_store_all_finish(workdir):
    """Also as a user who never heard of MLflow's telemetry: nothing of it is written to their home."""
    home = workdir / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_DISABLE_TELEMETRY", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    quick = [str(SINE_CONFIG), "trainer.max_steps=3", "cluster.num_shards=0", "algorithm.compile=false",
             "trainer.progress_bar=false", "evaluation.num_tasks=2", "evaluation.shots=[5]"]  # fmt: skip
    procs = [_cli(workdir, "train", *quick, f"tracking.run_name=run{i}", env=env) for i in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    runs = _runs(workdir)
    assert sorted(r.data.tags["mlflow.runName"] for r in runs) == ["run0", "run1", "run2"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert not (home / ".config" / "mlflow").exists(), sorted((home / ".config" / "mlflow").rglob("*"))


EMBEDDED = """
import json, pathlib, subprocess, sys, urllib.request
import psutil, ray
from distmeta import runtime
with runtime.ray_session("", 1, dashboard=True):
    session = str(runtime._session_dir())
    url = "http://" + ray._private.worker.get_dashboard_url()
    token = subprocess.run([str(pathlib.Path(sys.executable).with_name("ray")), "get-auth-token"], capture_output=True, text=True, check=True).stdout.strip()
    request = urllib.request.Request(url + "/api/version", headers={"Authorization": "Bearer " + token})
    version = json.loads(urllib.request.urlopen(request, timeout=30).read())["ray_version"]
    port = int(url.rsplit(":", 1)[1])
    bound = sorted({c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port})
print(json.dumps({"session": session, "url": url, "version": version, "bound": bound}))
"""


@pytest.mark.ray
def test_an_in_process_ray_leaves_no_session_folder_a_private_token_and_its_dashboard_on_localhost(tmp_path):
    """A new ``~/.ray/auth_token`` is this user's only (0600), Ray's session folder goes with a
    run that ends well, and ``cluster.dashboard``'s dashboard answers on 127.0.0.1 alone, at the
    address printed."""
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", EMBEDDED], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith('{"session"'))
    report = json.loads(line)
    import ray

    assert report["version"] == ray.__version__ and report["bound"] == ["127.0.0.1"], report
    assert f"Ray dashboard: {report['url']} (it asks for the token `ray get-auth-token` prints)" in proc.stdout.splitlines()
    session = Path(report["session"])
    assert session.name.startswith("session_") and not session.exists(), sorted(session.rglob("*"))[:20]
    token = tmp_path / ".ray" / "auth_token"
    assert token.is_file() and token.stat().st_mode & 0o777 == 0o600


def test_sigterm_before_the_first_step_still_ends_killed_with_a_checkpoint(workdir, capsys, monkeypatch):
    """Between Lightning's start of fit (its own SIGTERM handler, which ends fit with an exception)
    and the learner's first hook, a SIGTERM is still a clean stop."""
    from distmeta.learner.module import MetaLearner

    first_hook = MetaLearner.on_train_start

    def signalled_first(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler, with ours composed into it, takes it
        first_hook(self)

    monkeypatch.setattr(MetaLearner, "on_train_start", signalled_first)
    assert main(["train", *TRAIN, "cluster.num_shards=0"]) == 143
    err = " ".join(capsys.readouterr().err.split())
    found = STOPPED.search(err)
    assert found and found.group(1) == "SIGTERM", err[-3000:]
    assert torch.load(found.group(3), weights_only=True)["global_step"] == int(found.group(2)) <= 1
    (run,) = _runs(workdir)
    assert run.info.status == "KILLED"
