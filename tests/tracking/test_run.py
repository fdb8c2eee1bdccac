"""What a run records, against a real sqlite store: the run itself, its config as params and YAML,
checkpoints, evaluation numbers and figure, and a model that loads back."""

import json
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

import distmeta
from distmeta.tracking.run import CONFIG_ARTIFACT, log_checkpoints, log_config, log_evaluation, log_final_evaluation, log_model
from distmeta.tracking.store import artifact_location

from .waits import wait_until


def _text(client: MlflowClient, run_id: str, path: str, dst) -> str:
    with open(client.download_artifacts(run_id, path, str(dst))) as f:
        return f.read()


def test_make_logger_creates_a_named_run_in_the_experiment(sqlite_uri, new_logger):
    """The run exists in the named experiment (once the logger is first used, as ``train`` does with
    ``run_id``), with the run name, and artifacts beside the database."""
    logger = new_logger(sqlite_uri, "exp-create", "first-run")
    run_id = logger.run_id
    client = MlflowClient(sqlite_uri)
    experiment = client.get_experiment_by_name("exp-create")
    assert experiment is not None and logger.experiment_id == experiment.experiment_id
    assert experiment.artifact_location == artifact_location(sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.run_name == "first-run" and run.info.status == "RUNNING"
    assert run.info.artifact_uri.startswith(artifact_location(sqlite_uri))


def test_make_logger_with_a_run_id_reattaches_to_that_run(sqlite_uri, new_logger):
    """A resume (``run_id``) adds to the same run; no second run appears in the experiment."""
    first = new_logger(sqlite_uri, "exp-resume", "resumed-run")
    first.log_metrics({"meta/loss": 1.0}, step=1)
    assert wait_until(lambda: first.pending == 0, 30)
    again = new_logger(sqlite_uri, "exp-resume", "resumed-run", run_id=first.run_id)
    assert again.run_id == first.run_id and again.experiment_id == first.experiment_id
    again.log_metrics({"meta/loss": 0.5}, step=2)
    assert wait_until(lambda: again.pending == 0, 30)
    client = MlflowClient(sqlite_uri)
    assert len(client.search_runs([first.experiment_id])) == 1
    history = client.get_metric_history(first.run_id, "meta/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]


def test_make_logger_without_a_name_lets_mlflow_name_the_run(sqlite_uri, new_logger):
    logger = new_logger(sqlite_uri, "exp-unnamed", "")
    assert MlflowClient(sqlite_uri).get_run(logger.run_id).info.run_name


def test_log_config_logs_flat_params_and_the_yaml(sqlite_uri, new_logger, tmp_path):
    """Every flattened key becomes a param (more than one 100-param batch), the YAML is
    ``config/config.yaml``, and the run is tagged with distmeta's version."""
    logger = new_logger(sqlite_uri, "exp-config", "config-run")
    flat = {f"group{i % 7}.key{i}": i * 0.5 for i in range(250)}
    flat.update({"algorithm.name": "maml", "tracking.run_name": None, "tasks.families": ["sine", "glyphs"]})
    yaml_text = "algorithm:\n  name: maml\n"
    log_config(logger.experiment, logger.run_id, flat, yaml_text, resumed_at=None)
    client = MlflowClient(sqlite_uri)
    run = client.get_run(logger.run_id)
    assert run.data.params == {k: str(v) for k, v in flat.items()}
    assert run.data.tags["distmeta.version"] == distmeta.__version__
    assert [a.path for a in client.list_artifacts(logger.run_id, "config")] == [CONFIG_ARTIFACT]
    assert _text(client, logger.run_id, CONFIG_ARTIFACT, tmp_path) == yaml_text


def test_log_config_on_resume_keeps_params_and_adds_a_resume_yaml(sqlite_uri, new_logger, tmp_path):
    """Resumed at step N: logged params keep their first values (MLflow would refuse a change),
    new keys are added, the original YAML stays and ``config/resume_step<N>.yaml`` holds the new one."""
    logger = new_logger(sqlite_uri, "exp-config-resume", "config-run")
    log_config(logger.experiment, logger.run_id, {"trainer.max_steps": 100, "a.b": 1}, "max_steps: 100\n", None)
    log_config(logger.experiment, logger.run_id, {"trainer.max_steps": 400, "a.b": 1, "new.key": "x"}, "max_steps: 400\n", 100)
    client = MlflowClient(sqlite_uri)
    assert client.get_run(logger.run_id).data.params == {"trainer.max_steps": "100", "a.b": "1", "new.key": "x"}
    paths = {a.path for a in client.list_artifacts(logger.run_id, "config")}
    assert paths == {CONFIG_ARTIFACT, "config/resume_step100.yaml"}
    assert _text(client, logger.run_id, CONFIG_ARTIFACT, tmp_path / "a") == "max_steps: 100\n"
    assert _text(client, logger.run_id, "config/resume_step100.yaml", tmp_path / "b") == "max_steps: 400\n"


def test_log_checkpoints_uploads_the_files_that_exist(sqlite_uri, new_logger, tmp_path):
    """``checkpoints/<file name>`` with the file's bytes; a checkpoint that was never written is skipped."""
    logger = new_logger(sqlite_uri, "exp-ckpt", "ckpt-run")
    files = {"last": tmp_path / "last.ckpt", "best": tmp_path / "best.ckpt"}
    for name, path in files.items():
        path.write_bytes(name.encode() + bytes(range(256)) * 10)
    log_checkpoints(logger.experiment, logger.run_id, {**files, "never": tmp_path / "never.ckpt"})
    client = MlflowClient(sqlite_uri)
    paths = sorted(a.path for a in client.list_artifacts(logger.run_id, "checkpoints"))
    assert paths == ["checkpoints/best.ckpt", "checkpoints/last.ckpt"]
    for name, path in files.items():
        copy = client.download_artifacts(logger.run_id, f"checkpoints/{path.name}", str(tmp_path / f"down_{name}"))
        assert open(copy, "rb").read() == path.read_bytes()


SERIES = [("test/mse.k10.mean", 0, 0.5), ("test/mse.k10.mean", 1, 0.25), ("test/mse.k10.ci95", 0, 0.02),
          ("test/mse.k10.ci95", 1, 0.01)]  # fmt: skip
TABLE = {"shots": [10, 10], "steps": [0, 1], "mean": [0.5, 0.25], "ci95": [0.02, 0.01]}


def _figure(tmp_path):
    figure = tmp_path / "adaptation_curve.png"
    figure.write_bytes(b"\x89PNG not really")
    return figure


def test_log_final_evaluation_writes_the_curves_as_series_the_table_and_the_figure(sqlite_uri, new_logger, tmp_path):
    """Each curve is one series whose step is the number of inner steps; the table is MLflow's
    table artifact (columns and rows); the figure lies under the given artifact folder."""
    logger = new_logger(sqlite_uri, "exp-eval", "eval-run")
    log_final_evaluation(sqlite_uri, logger.run_id, SERIES, TABLE, _figure(tmp_path), "eval")
    client = MlflowClient(sqlite_uri)
    history = client.get_metric_history(logger.run_id, "test/mse.k10.mean")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.25)]
    assert set(client.get_run(logger.run_id).data.metrics) == {"test/mse.k10.mean", "test/mse.k10.ci95"}
    assert sorted(a.path for a in client.list_artifacts(logger.run_id, "eval")) == [
        "eval/adaptation_curve.json", "eval/adaptation_curve.png"]  # fmt: skip
    table = json.loads(Path(client.download_artifacts(logger.run_id, "eval/adaptation_curve.json", str(tmp_path))).read_text())
    assert table["columns"] == list(TABLE) and table["data"] == [[10, 0, 0.5, 0.02], [10, 1, 0.25, 0.01]]


def test_an_evaluation_is_a_finished_run_of_its_own_nested_under_the_training_run(sqlite_uri, new_logger, tmp_path):
    logger = new_logger(sqlite_uri, "exp-nested", "train-run")
    record = log_evaluation(sqlite_uri, logger.run_id, "eval last tasks50", {"evaluation.num_tasks": "50"}, SERIES,
                            TABLE, _figure(tmp_path), "eval")  # fmt: skip
    client = MlflowClient(sqlite_uri)
    child, parent = client.get_run(record.evaluation_id), client.get_run(logger.run_id)
    assert record.run_id == logger.run_id != record.evaluation_id
    assert child.data.tags["mlflow.parentRunId"] == logger.run_id and child.info.run_name == "eval last tasks50"
    assert child.info.experiment_id == parent.info.experiment_id and child.info.status == "FINISHED"
    assert child.data.params == {"evaluation.num_tasks": "50"} and child.data.metrics == {"test/mse.k10.mean": 0.25,
                                                                                           "test/mse.k10.ci95": 0.01}  # fmt: skip
    assert len(client.list_artifacts(record.evaluation_id, "eval")) == 2
    assert parent.data.metrics == {} and client.list_artifacts(logger.run_id, "eval") == [], "the training run is untouched"


@pytest.fixture
def keep_tracking_uri():
    """``log_model`` sets the process's MLflow tracking URI; the test puts it back."""
    previous = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(previous)


def test_log_model_loads_back_as_the_same_module(sqlite_uri, new_logger, keep_tracking_uri):
    """``mlflow.pytorch.load_model`` of the returned URI is an ``nn.Module`` with the same outputs,
    logged under the run."""
    logger = new_logger(sqlite_uri, "exp-model", "model-run")
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    model_uri = log_model(sqlite_uri, logger.run_id, model)
    mlflow.set_tracking_uri(sqlite_uri)
    loaded = mlflow.pytorch.load_model(model_uri)
    assert isinstance(loaded, nn.Linear)
    x = torch.randn(5, 3)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert mlflow.get_logged_model(model_uri.split("/")[-1]).source_run_id == logger.run_id
