"""What makes a run reproducible, beside its params: the project checkout's git commit, the task
families as MLflow dataset inputs, and a description (MLflow's run note)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_BRANCH, MLFLOW_GIT_COMMIT, MLFLOW_GIT_REPO_URL

NOTE_TAG = "mlflow.note.content"
"""MLflow's run description (the UI's Description on the run page)."""
DIRTY_TAG = "distmeta.git.dirty"
GIT_ENV = "DISTMETA_GIT_TAGS"
"""The submitting checkout's :func:`git_tags` as JSON, set by ``distmeta submit`` for its job:
the job's working directory is a copy without ``.git``."""
CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True)
class DatasetRecord:
    """A task family as MLflow sees a dataset: ``source`` is a local folder (file-backed families:
    ``digest`` over its files' names, sizes and times) or empty (computed families: ``digest``
    over ``spec``, which says every setting of the family)."""

    name: str
    digest: str
    spec: dict
    source: str = ""


@dataclass(frozen=True)
class RunRecords:
    description: str
    checkout: Path
    """A folder of the project checkout the run's config is in (its git state is recorded)."""
    datasets: tuple[DatasetRecord, ...] = field(default=())


def git_tags(folder: Path) -> dict[str, str]:
    """MLflow's git tags (commit, branch, remote) and whether tracked files have changes, for the
    git checkout ``folder`` is in; none if it is in none (or git is not installed)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        tags = {MLFLOW_GIT_COMMIT: git("rev-parse", "HEAD")}
        tags[DIRTY_TAG] = "true" if git("status", "--porcelain", "--untracked-files=no") else "false"
    except (OSError, subprocess.SubprocessError):
        return {}
    for tag, args in (
        (MLFLOW_GIT_BRANCH, ("symbolic-ref", "--short", "-q", "HEAD")),
        (MLFLOW_GIT_REPO_URL, ("remote", "get-url", "origin")),
    ):
        try:
            tags[tag] = git(*args)
        except subprocess.SubprocessError:  # a detached head's branch, or no remote: left out
            pass
    if MLFLOW_GIT_REPO_URL in tags:
        tags[MLFLOW_GIT_REPO_URL] = _without_credentials(tags[MLFLOW_GIT_REPO_URL])
    return tags


def _without_credentials(url: str) -> str:
    """``https://user:token@host/repo`` -> ``https://host/repo``: a remote's URL may carry a token."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def log_records(client: MlflowClient, run_id: str, records: RunRecords) -> None:
    """The git tags of the config's checkout (else those its submitter sent, :data:`GIT_ENV`), the
    description and the datasets."""
    tags = git_tags(records.checkout) or json.loads(os.environ.get(GIT_ENV) or "{}")
    if records.description:
        tags[NOTE_TAG] = records.description
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    if records.datasets:
        client.log_inputs(run_id, datasets=[_input(d) for d in records.datasets])


def _input(d: DatasetRecord) -> DatasetInput:
    source_type, source = ("local", {"uri": d.source}) if d.source else ("code", {"tags": {"distmeta.family": d.name}})
    dataset = Dataset(d.name, d.digest, source_type, json.dumps(source), profile=json.dumps(d.spec))
    return DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, "training")])
