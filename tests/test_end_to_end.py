"""The commands a user types: train as a process on 2 in-process Ray actors, then eval --json (in this process)."""

import json
import subprocess
import sys

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

    same = run_eval()  # the checkpoint's own settings: the numbers train logged for the final weights
    for key in ("mse.k5.steps0.mean", "mse.k10.steps1.mean", "mse.k20.steps10.ci95"):
        assert abs(same[key] - logged[f"eval/{key}"]) <= 1e-9 * abs(same[key]), key

    report = run_eval("evaluation.num_tasks=100", "--no-mlflow")
    assert report["num_tasks"] == 100
    for k in (5, 10, 20):
        for s in (0, 1, 5, 10):
            assert report[f"mse.k{k}.steps{s}.mean"] > 0 and report[f"mse.k{k}.steps{s}.ci95"] > 0
    assert report["figure"].endswith("adaptation_curve.png")
