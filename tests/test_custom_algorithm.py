"""Adding an algorithm is one module and one registration line: a toy "no adaptation" baseline
(the pre-adaptation query loss, no inner loop), defined and registered here, trains through the
CLI's own path and is evaluated at step 0 only (it declares no inner loop)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from mlflow.tracking import MlflowClient

from distmeta import algorithms, cli
from distmeta.algorithms import Algorithm, Mode, forward, meta_grad
from tests.conftest import SINE_CONFIG


@dataclass(frozen=True)
class NoAdaptation(Algorithm):
    name = "noadapt"
    adapts = False

    def task_objective(self, model, params, buffers, task, mode: Mode = Mode()):
        loss, metrics = self.query_metrics(forward(model, params, buffers, task.query_x), task.query_y)
        return loss, {"loss": loss.detach(), **metrics}

    def scores(self, model, params, buffers, task, steps):
        params = {k: v.detach() for k, v in params.items()}
        return self.score(forward(model, params, buffers, task.query_x), task.query_y).expand(len(steps))


@pytest.fixture
def registered():
    algorithms.register("noadapt", NoAdaptation)
    yield
    algorithms.ALGORITHMS.pop("noadapt")


def test_a_registered_algorithm_trains_through_the_cli(registered, workdir, capsys):
    args = ["algorithm.name=noadapt", "algorithm.inner_steps=0", "cluster.num_shards=0", "algorithm.compile=false",
            "trainer.max_steps=3", "trainer.val_every_n_steps=2", "trainer.log_every_n_steps=1", "trainer.progress_bar=false",
            "evaluation.num_tasks=10"]  # fmt: skip
    assert cli.main(["train", str(SINE_CONFIG), *args]) == 0
    out = capsys.readouterr().out
    run_id = out.split("MLflow run id:")[1].split()[0]
    run = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["algorithm.name"] == "noadapt"
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    evals = [k for k in run.data.metrics if k.startswith("test/")]
    assert evals and all({m.step for m in client.get_metric_history(run_id, k)} == {0} for k in evals)  # no inner loop


def test_its_meta_gradient_is_the_plain_query_loss_gradient(registered):
    from distmeta.models import ModelSpec
    from distmeta.tasks import SineFamily

    torch.manual_seed(0)
    model = ModelSpec("mlp", (1,), 1, hidden=(8,)).build()
    params = dict(model.named_parameters())
    tasks = SineFamily().sample(0, 0, 0, range(4))
    got = meta_grad(algorithms.build("noadapt"), model, {k: p.detach() for k, p in params.items()}, {}, tasks).grads
    loss = sum(((model(tasks.query_x[i]) - tasks.query_y[i]) ** 2).mean() for i in range(4))
    expected = torch.autograd.grad(loss, list(params.values()))
    for (name, _), e in zip(params.items(), expected):
        torch.testing.assert_close(got[name], e)
