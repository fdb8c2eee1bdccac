"""Shared fixtures: a working directory per test, one in-process Ray runtime per session, and a
real ``mlflow server`` bound to 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_worker_niceness", "0")  # as distmeta.runtime does for embedded Ray

REPO = Path(__file__).resolve().parents[1]
SINE_CONFIG = REPO / "configs" / "sine_maml.yaml"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a fresh folder: the default MLflow store and checkpoints land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def ray_runtime():
    """Ray started once in this process (2 CPUs, no dashboard); ``distmeta.train`` reuses it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 (free port, sqlite backend, temp artifact root)."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [
        str(exe) if exe.exists() else shutil.which("mlflow"), "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--default-artifact-root", (root / "artifacts").as_uri(),
        "--workers", "1",
    ]
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("mlflow server did not become healthy in 90 s")
    yield uri
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    log.close()
