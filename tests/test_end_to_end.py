"""The commands a user types: train as a process on 2 in-process Ray actors, then eval --json (in this process)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distmeta.cli import main
from tests.conftest import SINE_CONFIG

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.new_store]  # a newcomer's first run makes the store


def test_train_then_eval_json(workdir, capsys):
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "distmeta.cli",
            "train",
            str(SINE_CONFIG),
            "trainer.max_steps=30",
            "trainer.val_every_n_steps=15",
            "trainer.log_every_n_steps=10",
            "evaluation.num_tasks=50",
            "trainer.progress_bar=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    out = train.stdout
    assert "MLflow run id:" in out and "checkpoint folder:" in out and "K=10" in out
    run_id = out.split("MLflow run id:")[1].split()[0]
    ckpt = workdir / "checkpoints" / run_id / "last.ckpt"
    assert ckpt.is_file() and (workdir / "mlflow.db").is_file()

    from mlflow.tracking import MlflowClient

    logged = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id).data.metrics

    def run_eval(*overrides):  # in this process: the real process was the training's
        capsys.readouterr()
        assert main(["eval", "--checkpoint", str(ckpt), "--json", *overrides]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    training_figure = workdir / "checkpoints" / run_id / "eval" / "adaptation_curve.png"
    drawn = training_figure.read_bytes()
    same = run_eval()  # the checkpoint's own settings: the numbers train logged for the final weights
    for key in ("mse.k5.steps0.mean", "mse.k10.steps1.mean", "mse.k20.steps10.ci95"):
        assert abs(same[key] - logged[f"eval/{key}"]) <= 1e-9 * abs(same[key]), key
    assert same["run_id"] == run_id and same["checkpoint"] == str(ckpt)

    report = run_eval("evaluation.num_tasks=100", "evaluation.shots=[5]")
    assert report["num_tasks"] == 100 and "mse.k10.steps1.mean" not in report
    for s in (0, 1, 5, 10):
        assert report[f"mse.k5.steps{s}.mean"] > 0 and report[f"mse.k5.steps{s}.ci95"] > 0
    # each evaluation is a record of its own; the training run's results stay as they were logged
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.get_run(run_id).data.metrics == logged
    assert training_figure.read_bytes() == drawn
    nested = client.search_runs([client.get_run(run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    by_id = {r.info.run_id: r for r in nested}
    assert sorted(by_id) == sorted([same["evaluation_id"], report["evaluation_id"]])
    first, second = by_id[same["evaluation_id"]], by_id[report["evaluation_id"]]
    assert first.data.params["evaluation.num_tasks"] == "50" and first.data.params["evaluation.shots"] == "5,10,20"
    assert second.data.params["evaluation.num_tasks"] == "100" and second.data.params["evaluation.shots"] == "5"
    assert second.data.metrics["eval/mse.k5.steps1.mean"] == report["mse.k5.steps1.mean"]
    figures = {same["figure"], report["figure"], str(training_figure)}
    assert len(figures) == 3 and all(Path(f).is_file() for f in figures), "no figure drawn over another"

    # tracking.uri= overrides the store the checkpoint recorded (a copied run folder's own store)
    shutil.copy(workdir / "mlflow.db", workdir / "copy.db")
    copied = run_eval("evaluation.num_tasks=10", "tracking.uri=sqlite:///copy.db")
    assert (
        MlflowClient(f"sqlite:///{workdir / 'copy.db'}").get_run(copied["evaluation_id"]).data.tags["mlflow.parentRunId"]
        == run_id
    )
    assert len(client.search_runs([first.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")) == 2

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(ckpt), "--no-mlflow", "evaluation.num_tasks=10"]) == 0
    assert "not logged to MLflow (--no-mlflow)" in capsys.readouterr().out
