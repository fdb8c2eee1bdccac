"""A real multi-node Ray cluster on localhost, for the cluster tests: ``ray start --head`` and
``ray start --address`` processes, each node with its own temp dir and ports, everything bound to
127.0.0.1, stopped afterwards by the ids of the processes it started (never a global ``ray stop``,
which would take down other Ray instances on the machine)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.conftest import free_port

VENV_BIN = Path(sys.executable).parent
RAY_OWN = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")
"""Titles of a node's processes that are Ray's own, not an actor."""


def ray_env(token_path: Path) -> dict[str, str]:
    """The nodes run this venv's Python (jobs run ``python -m distmeta``), never phone home, and
    require Ray's token authentication with the cluster's own token (clients must present it)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_DISABLE_TELEMETRY="true",
        RAY_worker_niceness="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
    )
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    return env


def _node_ports() -> list[str]:
    # two nodes share one host: every port a node opens must differ between them
    return [
        "--node-manager-port",
        str(free_port()),
        "--object-manager-port",
        str(free_port()),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--dashboard-agent-grpc-port",
        str(free_port()),
        "--runtime-env-agent-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
        "--min-worker-port",
        "0",
        "--max-worker-port",
        "0",
    ]


def record_cluster(tmp: Path, address: str) -> dict[str, str]:
    """What ``ray start --head`` leaves for ``cluster.address=auto`` to find, in a Ray temp dir of
    the test's own; returns the environment that points a driver at it (Ray's default temp dir is
    ``$RAY_TMPDIR/ray``)."""
    (tmp / "ray").mkdir(parents=True, exist_ok=True)
    (tmp / "ray" / "ray_current_cluster").write_text(address + "\n")
    return {"RAY_TMPDIR": str(tmp)}


@dataclass
class LocalCluster:
    temp_dirs: list[Path] = field(default_factory=list)
    gcs: str = ""
    dashboard: str = ""
    token_path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dmtok", dir="/tmp")) / "auth_token")

    def __post_init__(self):
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)

    @property
    def env(self) -> dict[str, str]:
        return ray_env(self.token_path)

    def start_head(self, num_cpus: int, num_gpus: int = 0, resources: str = "") -> None:
        port, dash = free_port(), free_port()
        self.gcs, self.dashboard = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}"
        self._start(
            [
                "--head",
                "--port",
                str(port),
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(dash),
                "--include-dashboard",
                "true",
                "--ray-client-server-port",
                str(free_port()),
            ],
            num_cpus,
            num_gpus,
            resources,
        )

    def add_node(self, num_cpus: int, num_gpus: int = 0, resources: str = "") -> None:
        self._start(["--address", self.gcs], num_cpus, num_gpus, resources)

    def _start(self, args: list[str], num_cpus: int, num_gpus: int, resources: str) -> None:
        temp = Path(tempfile.mkdtemp(prefix="dmray", dir="/tmp"))  # short: Ray's unix sockets live in it
        self.temp_dirs.append(temp)
        cmd = [
            str(VENV_BIN / "ray"),
            "start",
            *args,
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(num_cpus),
            "--num-gpus",
            str(num_gpus),
            "--temp-dir",
            str(temp),
            "--disable-usage-stats",
            *_node_ports(),
        ]
        if resources:
            cmd += ["--resources", resources]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    def processes(self, node: int | None = None) -> list[psutil.Process]:
        """Every process of this cluster (or of its ``node``-th node, 0 the head): their command
        lines name the node's temp dir."""
        marks = [str(t) for t in (self.temp_dirs if node is None else self.temp_dirs[node : node + 1])]
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmdline = " ".join(proc.info["cmdline"] or [])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if proc.pid != os.getpid() and any(m in cmdline for m in marks):
                found.append(proc)
        return found

    def actors(self, node: int) -> list[str]:
        """The process titles (``ray::Class.method``) of the actors on one node: its raylet's
        descendants, less Ray's own agents and idle workers."""
        titles = []
        for raylet in (p for p in self.processes(node) if "raylet" in p.name()):
            for child in raylet.children(recursive=True):
                try:
                    title = " ".join(child.cmdline()).strip()
                except psutil.NoSuchProcess:
                    continue
                if title.startswith("ray::") and not title.startswith(RAY_OWN):
                    titles.append(title)
        return titles

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the cluster's processes (and their children), then SIGKILL what is left."""
        procs: dict[int, psutil.Process] = {}
        for proc in self.processes():
            procs[proc.pid] = proc
            try:
                for child in proc.children(recursive=True):
                    procs[child.pid] = child
            except psutil.NoSuchProcess:
                pass
        for proc in procs.values():
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(list(procs.values()), timeout=timeout_s)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)

    def kill_node(self, node: int) -> int:
        """SIGKILL every process of one node (its raylet first): the node is lost. Returns how many."""
        procs = sorted(self.processes(node), key=lambda p: "raylet" not in p.name())
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        return len(procs)

    def run_python(self, code: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
        """``code`` in a fresh driver process joined to this cluster (the test process keeps its own
        in-process Ray)."""
        proc = self.start_python(code)
        out, err = proc.communicate(timeout=timeout_s)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def start_python(self, code: str, by_record: bool = False) -> subprocess.Popen:
        """With ``by_record``, the driver finds the cluster as ``cluster.address=auto`` does on a
        machine where ``ray start --head`` ran: from Ray's record in its temp dir, not RAY_ADDRESS."""
        env = self.env
        if by_record:
            recorded = (self.temp_dirs[0] / "ray_current_cluster").read_text().strip()
            env.update(record_cluster(self.temp_dirs[0] / "record", recorded))
        else:
            env["RAY_ADDRESS"] = self.gcs
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
