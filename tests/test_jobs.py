"""``distmeta submit``'s job, prepared and checked before anything reaches a cluster."""

import json

import pytest

from distmeta import jobs
from distmeta.cli import main
from distmeta.errors import ConfigError, UserError
from distmeta.tracking.announce import announce
from distmeta.tracking.records import git_tags
from tests.conftest import REPO

SERVER = ["tracking.uri=http://127.0.0.1:5000", "checkpoint.dir=/srv/distmeta/checkpoints"]


def test_the_job_runs_train_in_the_uploaded_folder_with_the_pinned_requirements():
    job = jobs.prepare(str(REPO / "configs/sine_maml.yaml"), ["trainer.max_steps=5", *SERVER], REPO, submission_id="abc")
    assert job.entrypoint == (
        "python -m distmeta train configs/sine_maml.yaml trainer.max_steps=5 tracking.uri=http://127.0.0.1:5000 "
        "checkpoint.dir=/srv/distmeta/checkpoints"
    )
    assert job.runtime_env["working_dir"] == str(REPO) and ".venv" in job.runtime_env["excludes"]
    pins = job.runtime_env["pip"]["packages"]
    assert not any(p.startswith("ray==") for p in pins), "the cluster keeps its own Ray"
    assert any(p.startswith("torch==") for p in pins) and not any(p.startswith("#") for p in pins)
    assert job.submission_id == "abc"
    sent = json.loads(job.runtime_env["env_vars"].get("DISTMETA_GIT_TAGS", "{}"))  # the job's copy has no .git
    assert sent == git_tags(REPO / "configs")
    bare = jobs.prepare("configs/sine_maml.yaml", SERVER, REPO, pip=False)
    assert "pip" not in bare.runtime_env and bare.submission_id.startswith("distmeta-")


@pytest.mark.parametrize(
    "config, overrides, error, message",
    [
        ("configs/sine_maml.yaml", ["model.hiden=[4]", *SERVER], ConfigError, "did you mean 'model.hidden'"),
        ("configs/sine_maml.yaml", [], UserError, "tracking.uri=(empty) would put the MLflow store in the job's temporary"),
        ("configs/sine_maml.yaml", ["tracking.uri=sqlite:///mlflow.db"], UserError, "would put the MLflow store"),
        ("configs/sine_maml.yaml", SERVER[:1], UserError, "checkpoint.dir=checkpoints is relative"),
        ("configs/none.yaml", SERVER, UserError, "none.yaml"),
    ],
)
def test_bad_jobs_are_refused_before_submission(config, overrides, error, message, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(error) as info:
        jobs.prepare(str(REPO / config), overrides, REPO)
    assert message in str(info.value)


def test_a_config_outside_the_uploaded_folder_is_refused(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("trainer:\n  max_steps: 3\n")
    with pytest.raises(UserError, match="is outside the working directory"):
        jobs.prepare(str(cfg), SERVER, REPO)


def test_submit_without_an_address_names_the_variables(monkeypatch, capsys):
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(REPO)
    assert main(["submit", "configs/sine_maml.yaml", *SERVER]) == 2
    assert "pass --address http://HEAD:8265 or set RAY_API_SERVER_ADDRESS / RAY_ADDRESS" in " ".join(
        capsys.readouterr().err.split()
    )


def test_run_urls_point_at_the_mlflow_ui_page():
    assert jobs.run_url("r1", "7", "http://h:5000/") == "http://h:5000/#/experiments/7/runs/r1?workflowType=machine_learning"
    assert jobs.run_url("r1", "7", "sqlite:////x/mlflow.db") == "sqlite:////x/mlflow.db"
    assert jobs._RUN_LINE.search("INFO " + announce("r1", "7", "http://h:5000")).groups() == ("r1", "7", "http://h:5000")
