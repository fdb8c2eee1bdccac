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


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its tables made, once per session: making them is MLflow's
    migrations, about 3 s per store, paid by every test that trains."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("migrated") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch, request):
    """Run in a fresh folder: the default MLflow store and checkpoints land there. The folder
    starts with an existing, empty store (a copy of :func:`migrated_store`), unless the test is
    marked ``new_store`` (what happens on a store's first use is what it checks)."""
    monkeypatch.chdir(tmp_path)
    if request.node.get_closest_marker("new_store") is None:
        shutil.copyfile(request.getfixturevalue("migrated_store"), tmp_path / "mlflow.db")
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


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite backend, local artifact root under ``root``),
    that tests can stop and start again on the same port and store."""

    def __init__(self, root: Path, port: int | None = None, store: Path | None = None):
        """``store``: a migrated sqlite store the server starts from (its first start then skips
        MLflow's migrations); None: the server makes its own."""
        self.root, self.port = root, port or free_port()
        if store is not None and not (root / "mlflow.db").exists():
            shutil.copyfile(store, root / "mlflow.db")
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90) -> MlflowServer:
        exe = Path(sys.executable).parent / "mlflow"
        cmd = [
            str(exe) if exe.exists() else shutil.which("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--default-artifact-root",
            (self.root / "artifacts").as_uri(),
            "--workers",
            "1",
        ]
        log = open(self.root / "server.log", "a")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not become healthy in {timeout_s:.0f} s")

    def stop(self, sig: int = 15) -> None:
        """Stop the server's process group (``sig`` 9 for a crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=20)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 (free port, sqlite backend, temp artifact root); it
    makes its own store, as a new server does."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server")).start()
    yield server.uri
    server.stop()
