"""Ray Jobs: ``distmeta submit`` and ``distmeta jobs``, over Ray's own ``JobSubmissionClient``.

A submitted job runs ``python -m distmeta train CONFIG overrides`` on the cluster's head node,
with this folder as its working directory (uploaded by Ray) and, unless told otherwise, the
pinned lock file as its pip requirements. The learner prints its MLflow run id early
(:data:`RUN_MARKER`); ``submit`` picks it out of the job's log stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from distmeta.errors import UserError
from distmeta.tracking.announce import RUN_MARKER

LOCK = Path("requirements/constraints.txt")
"""The pinned stack a job's pip runtime env installs (the lock the Makefile uses)."""
# the learner prints ``distmeta: MLflow run <id> experiment <id> tracking <uri>`` once the run exists
_RUN_LINE = re.compile(re.escape(RUN_MARKER) + r" (\S+) experiment (\S+) tracking (\S+)")

# never uploaded: environments, local stores and run outputs (Ray also honours .gitignore)
EXCLUDES = [".venv", ".git", "mlruns", "mlartifacts", "checkpoints", "outputs", "*.db", "__pycache__", ".pytest_cache"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def client(address: str | None):
    """A ``JobSubmissionClient`` for the dashboard at ``address`` (else ``RAY_API_SERVER_ADDRESS`` /
    ``RAY_ADDRESS``, as Ray resolves them). Token authentication is Ray's own: a token in
    ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token`` is sent when the cluster asks for one."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    target = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not target:
        raise UserError("no cluster to submit to: pass --address http://HEAD:8265 or set RAY_API_SERVER_ADDRESS / RAY_ADDRESS")
    try:
        return JobSubmissionClient(address or None)
    except AuthenticationError as exc:
        raise UserError(
            f"the Ray job server at {target} refused the request ({str(exc).splitlines()[0]}); it uses token "
            "authentication: set RAY_AUTH_TOKEN to the cluster's token (or RAY_AUTH_TOKEN_PATH to a file "
            "holding it, default ~/.ray/auth_token)"
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot reach the Ray job server at {target}: {exc}") from None


@dataclass(frozen=True)
class Submission:
    entrypoint: str
    runtime_env: dict
    submission_id: str


def prepare(
    config_path: str, overrides: Sequence[str], workdir: Path, pip: bool = True, submission_id: str | None = None
) -> Submission:
    """The job for ``config_path`` + ``overrides``, validated here first so a bad config never
    reaches the cluster. The config must lie inside ``workdir`` (it travels with it)."""
    from distmeta import config  # here, not at the top: `distmeta jobs` then starts without torch
    from distmeta.recipe import Recipe

    run = Recipe.from_config(config.load(config_path, overrides)).run
    workdir = workdir.resolve()
    path = Path(config_path).resolve()
    if not path.is_relative_to(workdir):
        raise UserError(
            f"config {config_path} is outside the working directory {workdir}, which is what the job receives; "
            "run distmeta submit from a folder that contains it"
        )
    _check_tracking(run.tracking_uri)
    if not run.checkpoint_dir.is_absolute():
        raise UserError(
            f"checkpoint.dir={run.checkpoint_dir} is relative: the checkpoints would be written into the job's "
            "temporary working directory on the cluster and lost with it (and --resume could not find them); "
            "set checkpoint.dir to an absolute path on storage the head node keeps"
        )
    from distmeta.tracking.records import GIT_ENV, git_tags

    entrypoint = shlex.join(["python", "-m", "distmeta", "train", str(path.relative_to(workdir)), *overrides])
    env: dict = {
        "working_dir": str(workdir),
        "excludes": EXCLUDES,  # .git among them: the run is told the checkout's git state instead
        "env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"},
    }
    if tags := git_tags(path.parent):
        env["env_vars"][GIT_ENV] = json.dumps(tags)
    if pip:
        lock = workdir / LOCK
        if not lock.is_file():
            raise UserError(
                f"{lock} not found: the job's pinned requirements come from it (or pass --no-pip "
                "when the cluster's image already holds the pinned stack)"
            )
        env["pip"] = {"packages": _requirements(lock), "pip_check": False}
    return Submission(entrypoint, env, submission_id or f"distmeta-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")


def _requirements(lock: Path) -> list[str]:
    """The lock's pins, but not Ray's own: a job cannot change the Ray its cluster runs (Ray
    refuses), and the cluster's Ray is the one the job uses."""
    pins = [line.strip() for line in lock.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return [p for p in pins if not re.match(r"ray(\[.*\])?==", p)]


def _check_tracking(uri: str) -> None:
    """A job's working directory is a temporary copy on the head node: a store inside it is lost."""
    if uri.startswith(("http://", "https://", "databricks")):
        return
    local = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else uri
    if not uri or not Path(local).is_absolute():
        raise UserError(
            f"tracking.uri={uri or '(empty)'} would put the MLflow store in the job's temporary working "
            "directory on the cluster; set tracking.uri to an MLflow server (http://HOST:5000) or an "
            "absolute path every node sees"
        )


def submit(job_client, job: Submission) -> str:
    try:
        return job_client.submit_job(
            entrypoint=job.entrypoint,
            runtime_env=job.runtime_env,
            submission_id=job.submission_id,
            metadata={"distmeta": "train"},
        )
    except RuntimeError as exc:
        raise UserError(f"the Ray job server refused the job: {exc}") from None


def follow(
    job_client, job_id: str, out: Callable[[str], None] = print, on_run: Callable[[str, str, str], None] | None = None
) -> str:
    """Stream the job's logs to ``out`` until it ends; returns its final status (``SUCCEEDED``,
    ``FAILED`` or ``STOPPED``). ``on_run(run_id, experiment_id, tracking_uri)`` is called once,
    when the learner announces its MLflow run."""
    seen, partial = False, ""

    def emit(line: str) -> None:
        nonlocal seen
        out(line)
        match = _RUN_LINE.search(line)
        if match and not seen and on_run is not None:
            seen = True
            on_run(*match.groups())

    async def stream() -> None:
        nonlocal partial
        async for chunk in job_client.tail_job_logs(job_id):
            *lines, partial = (partial + chunk).split("\n")  # a chunk may end mid-line
            for line in lines:
                emit(line)

    asyncio.run(stream())
    if partial:
        emit(partial)
    return wait(job_client, job_id)


def wait(job_client, job_id: str, poll_s: float = 0.5) -> str:
    while (status := job_client.get_job_status(job_id).value) not in TERMINAL:
        time.sleep(poll_s)
    return status


def run_url(run_id: str, experiment_id: str, tracking_uri: str) -> str:
    """Where to look at the run: its MLflow UI page for a tracking server (in the UI's Model
    training view: MLflow 3's opens on its GenAI one), else the store itself."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    return tracking_uri


UI_PORT = 5000


def ui_lines(run_id: str, experiment_id: str, tracking_uri: str) -> list[tuple[str, str]]:
    """How to open the run's page (the training view: its overview and model metrics): on a
    tracking server its address; for a local store the command that serves the UI, and the page."""
    if tracking_uri.startswith(("http://", "https://")):
        return [("MLflow run page", run_url(run_id, experiment_id, tracking_uri))]
    beside = Path(sys.executable).with_name("mlflow")  # this environment's, as a venv installs it
    mlflow = str(beside) if beside.is_file() else shutil.which("mlflow") or "mlflow"
    command = (f"MLFLOW_DISABLE_TELEMETRY=true {shlex.quote(mlflow)} ui --backend-store-uri {shlex.quote(tracking_uri)} "
               f"--host 127.0.0.1 --port {UI_PORT}")  # fmt: skip
    return [("MLflow UI", command), ("then the run at", run_url(run_id, experiment_id, f"http://127.0.0.1:{UI_PORT}"))]
