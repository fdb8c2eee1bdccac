"""The commands a user types: train as a process on 2 in-process Ray actors, then eval --json (in this process)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distmeta.cli import main
from distmeta.config import load
from distmeta.recipe import Recipe
from distmeta.tasks import EVALUATION
from distmeta.tracking.records import git_tags
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
            "tracking.register_model=sine-adaptive",
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
    # a quiet console off a terminal: progress lines, not a bar's carriage returns; no warning nobody can act on
    lines = (out + train.stderr).splitlines()
    progress = [line for line in lines if line.startswith("step ")]
    assert [line.split()[1] for line in progress] == ["10/30", "20/30", "30/30"] and "tasks/s  ETA" in progress[0]
    assert "\r" not in out + train.stderr and max(len(line) for line in lines) <= 300
    assert not [line for line in lines if "warn" in line.lower() or "Tip:" in line or "available:" in line], train.stderr
    assert f"evaluation of the final weights ({ckpt}):" in out and "training time:" in out
    assert (
        f"http://127.0.0.1:5000/#/experiments/1/runs/{run_id}?workflowType=machine_learning" in out
        and "mlflow ui --backend-store-uri sqlite:///" in out
    )
    assert ckpt.is_file() and (workdir / "mlflow.db").is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    logged = client.get_run(run_id).data.metrics
    histories = {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in logged}
    # one family, no faults, a constant LR: no series copies another, none is a flat zero (the
    # machine's own system metrics aside: on loopback alone, bytes received are the bytes sent)
    training = {k: h for k, h in histories.items() if not k.startswith("system/")}
    same = [(a, b) for a in training for b in training if a < b and training[a] == training[b]]
    assert not same, f"identical series: {same}"
    assert not [k for k in logged if k.startswith(("family/", "fault/", "optim/lr", "meta/query_loss"))]
    assert histories["meta/val_mse"][0][0] == 0 and [s for s, _ in histories["meta/val_mse"]] == [0, 15, 30]
    assert [s for s, _ in histories["test/mse.k10.mean"]] == [0, 1, 5, 10]  # the adaptation curve: inner steps
    assert len(histories["time/first_step_ms"]) == 1 and all(k.endswith("_ms") for k in logged if k.startswith("time/"))
    assert client.get_run(run_id).data.tags["distmeta.fault.actor_restarts"] == "0"
    # reproducible records: the config's checkout, its description, the family as a dataset, a name
    run = client.get_run(run_id)
    assert run.data.tags.get("mlflow.source.git.commit") == git_tags(SINE_CONFIG.parent).get("mlflow.source.git.commit")
    assert run.info.run_name == "sine_maml" and run.data.tags["mlflow.note.content"].startswith(
        "distmeta train configs/sine_maml"
    )
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["sine"] and "tasks.ways" not in run.data.params
    # system metrics (MLflow's System metrics tab): the learner's machine, and each shard actor's process
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(logged)
    for k in (0, 1):
        assert histories[f"system/shard_{k}/rss_megabytes"][0][1] > 50  # a process with torch loaded
        assert histories[f"system/shard_{k}/cpu_utilization_percentage"][0][1] > 0
    assert not [k for k in logged if k.startswith("system/shard_2")]

    # the served model adapts: on the evaluation's own held-out tasks it gives eval's K=10 figures
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    adaptive_uri = out.split("adaptive model:")[1].split()[0]
    served = mlflow.pyfunc.load_model(adaptive_uri)
    assert served.metadata.saved_input_example_info is not None and served.metadata.signature.params.to_dict()[0]["default"] == 1
    recipe = Recipe(load(SINE_CONFIG, ["evaluation.num_tasks=50"]))
    (family,) = recipe.test_families
    tasks = family.sample(
        recipe.run.evaluation_seed, EVALUATION, 0, range(50), shots=10, query=recipe.evaluation_plan("sine").query
    )
    inputs = {"support_x": tasks.support_x.numpy(), "support_y": tasks.support_y.numpy(), "query_x": tasks.query_x.numpy()}
    curve = dict(histories["test/mse.k10.mean"])
    for steps, params in ((1, None), (0, {"steps": 0})):
        mse = float(((served.predict(inputs, params=params) - tasks.query_y.numpy()) ** 2).mean())
        assert abs(mse - curve[steps]) <= 0.05 * curve[steps], (steps, mse, curve[steps])
    (version,) = client.search_model_versions("name = 'sine-adaptive'")
    assert version.run_id == run_id and version.source.endswith(adaptive_uri.split("/")[-1])

    def run_eval(*overrides):  # in this process: the real process was the training's
        capsys.readouterr()
        assert main(["eval", "--checkpoint", str(ckpt), "--json", *overrides]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    training_figure = workdir / "checkpoints" / run_id / "eval" / "adaptation_curve.png"
    drawn = training_figure.read_bytes()
    same = run_eval()  # the checkpoint's own settings: the numbers train logged for the final weights
    for k, steps, stat in ((5, 0, "mean"), (10, 1, "mean"), (20, 10, "ci95")):
        key, value = f"mse.k{k}.steps{steps}.{stat}", dict(histories[f"test/mse.k{k}.{stat}"])[steps]
        assert abs(same[key] - value) <= 1e-9 * abs(same[key]), key
    assert same["run_id"] == run_id and same["checkpoint"] == str(ckpt)

    report = run_eval("evaluation.num_tasks=100", "evaluation.shots=[5]")
    assert report["num_tasks"] == 100 and "mse.k10.steps1.mean" not in report
    for s in (0, 1, 5, 10):
        assert report[f"mse.k5.steps{s}.mean"] > 0 and report[f"mse.k5.steps{s}.ci95"] > 0
    # each evaluation is a record of its own; the training run's results stay as they were logged
    assert client.get_run(run_id).data.metrics == logged
    assert training_figure.read_bytes() == drawn
    nested = client.search_runs([client.get_run(run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    by_id = {r.info.run_id: r for r in nested}
    assert sorted(by_id) == sorted([same["evaluation_id"], report["evaluation_id"]])
    first, second = by_id[same["evaluation_id"]], by_id[report["evaluation_id"]]
    assert first.data.params["evaluation.num_tasks"] == "50" and first.data.params["evaluation.shots"] == "5,10,20"
    assert second.data.params["evaluation.num_tasks"] == "100" and second.data.params["evaluation.shots"] == "5"
    curve = {m.step: m.value for m in client.get_metric_history(second.info.run_id, "test/mse.k5.mean")}
    assert curve[1] == report["mse.k5.steps1.mean"] and "test/mse.k10.mean" not in second.data.metrics
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
