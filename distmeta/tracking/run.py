"""The run's MLflow records: logger construction, params and config, checkpoints, the final model."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from torch import nn

from distmeta._version import __version__
from distmeta.logs import quiet_model_logging
from distmeta.tracking.outbox import OutboxLogger
from distmeta.tracking.store import artifact_location

if TYPE_CHECKING:
    from distmeta.tracking.adaptive import Served

CONFIG_ARTIFACT = "config/config.yaml"
TABLE_FILE = "adaptation_curve.json"
"""The evaluation's table (MLflow's table artifact: the UI shows it, ``mlflow.load_table`` reads it)."""


def make_logger(uri: str, experiment: str, run_name: str, run_id: str | None = None) -> OutboxLogger:
    """Lightning's MLflow logger with the URI given explicitly; metrics go through a queue and a
    sender thread (:class:`OutboxLogger`), so the step loop never waits on the store and an
    outage loses nothing."""
    return OutboxLogger(
        experiment_name=experiment,
        tracking_uri=uri,
        run_name=run_name or None,
        run_id=run_id,
        artifact_location=artifact_location(uri),
        log_model=False,
    )


def log_config(client: MlflowClient, run_id: str, flat: dict[str, Any], yaml_text: str, resumed_at: int | None) -> None:
    """Flattened config as params, YAML as an artifact. On resume, params already logged stay
    (MLflow params are immutable); a changed value is recorded in the resume's own YAML artifact."""
    existing = client.get_run(run_id).data.params
    params = [Param(k, str(v)[:500]) for k, v in flat.items() if k not in existing]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i : i + 100])
    name = CONFIG_ARTIFACT if resumed_at is None else f"config/resume_step{resumed_at}.yaml"
    log_text(client, run_id, yaml_text, name)
    client.set_tag(run_id, "distmeta.version", __version__)


def log_text(client: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_text(text)
        client.log_artifact(run_id, str(path), str(Path(artifact_file).parent) if "/" in artifact_file else None)


def log_checkpoints(client: MlflowClient, run_id: str, paths: dict[str, Path]) -> None:
    """``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt`` as run artifacts."""
    for path in paths.values():
        if path.is_file():
            client.log_artifact(run_id, str(path), "checkpoints")


Series = list[tuple[str, int, float]]
"""``(metric key, step, value)`` points: an evaluation's adaptation curves, whose step is the
number of inner steps."""


def log_final_evaluation(uri: str, run_id: str, series: Series, table: dict[str, list], figure: Path,
                         artifact_dir: str) -> None:  # fmt: skip
    """The training run's own evaluation of its final weights: the curves' ``series``, the
    ``table`` (columns) and the figures of ``figure``'s folder under ``artifact_dir``."""
    _log_results(MlflowClient(uri), run_id, series, table, figure, artifact_dir)


@dataclass(frozen=True)
class EvaluationRecord:
    """Where ``distmeta eval`` logged: its own run, nested under the training run ``run_id``."""

    uri: str
    run_id: str
    evaluation_id: str


def log_evaluation(uri: str, run_id: str, name: str, params: dict[str, str], series: Series, table: dict[str, list],
                   figure: Path, artifact_dir: str) -> EvaluationRecord:  # fmt: skip
    """An evaluation of the training run ``run_id`` as a run of its own, nested under it (MLflow's
    ``mlflow.parentRunId`` tag: the UI lists it under the training run, and runs compare in one
    table), in the same experiment: its settings as params, its curves, table and figure as the
    training run's are. The training run's own records are not touched."""
    client = MlflowClient(uri)
    parent = client.get_run(run_id)
    tags = {MLFLOW_PARENT_RUN_ID: run_id, MLFLOW_RUN_NAME: name, "distmeta.kind": "evaluation"}
    child = client.create_run(parent.info.experiment_id, tags=tags, run_name=name)
    evaluation_id = child.info.run_id
    try:
        client.log_batch(evaluation_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
        _log_results(client, evaluation_id, series, table, figure, artifact_dir)
    except BaseException:
        client.set_terminated(evaluation_id, "FAILED")
        raise
    client.set_terminated(evaluation_id, "FINISHED")
    return EvaluationRecord(uri, run_id, evaluation_id)


def _log_results(client: MlflowClient, run_id: str, series: Series, table: dict[str, list], figure: Path,
                 artifact_dir: str) -> None:  # fmt: skip
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, step, v in series]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    client.log_table(run_id, table, f"{artifact_dir}/{TABLE_FILE}")
    client.log_artifacts(run_id, str(figure.parent), artifact_dir)  # the adaptation figure and any beside it


def log_model(uri: str, run_id: str, model: nn.Module) -> str:
    """Log the meta-parameters as an MLflow PyTorch model (``mlflow.pytorch.load_model`` returns the
    ``nn.Module``). The distmeta package travels with it so it loads where distmeta is not installed."""
    package_dir = str(Path(__file__).resolve().parents[1])  # the distmeta package folder
    mlflow.set_tracking_uri(uri)
    with quiet_model_logging(), mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model.cpu(),
            name="model",
            code_paths=[package_dir],
            pip_requirements=[f"torch=={_torch_version()}"],
            serialization_format="pickle",  # loads back as the nn.Module itself
        )
    return info.model_uri


def log_adaptive_model(uri: str, run_id: str, model: nn.Module, served: Served) -> str:
    """Log the model that adapts (:mod:`distmeta.tracking.adaptive`: ``mlflow.pyfunc.load_model``
    of it takes support sets and queries), registered under ``served.register_as`` if set."""
    import cloudpickle
    import numpy

    from distmeta.tracking.adaptive import log_adaptive

    package_dir = str(Path(__file__).resolve().parents[1])
    requirements = [f"torch=={_torch_version()}", f"numpy=={numpy.__version__}", f"cloudpickle=={cloudpickle.__version__}"]
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        return log_adaptive(model.cpu(), served, [package_dir], requirements).model_uri


def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]
