"""MLflow for real: a `mlflow server` on 127.0.0.1, a short training run against it, and the run
read back with MlflowClient: params, config artifact, metrics, checkpoints, figure and model."""

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from distmeta.config import to_flat_dict
from distmeta.recipe import Recipe
from distmeta.tracking import names
from tests.integration.helpers import small_run

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_run_is_fully_recorded_on_a_tracking_server(workdir, ray_runtime, mlflow_server):
    result = small_run(
        "trainer.max_steps=20", "cluster.num_shards=2", f"tracking.uri={mlflow_server}", "tracking.experiment=server_test"
    )
    assert result.tracking_uri == mlflow_server
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"

    params = run.data.params
    assert params["algorithm.name"] == "maml" and params["cluster.num_shards"] == "2"
    assert params["trainer.max_steps"] == "20" and params["tracking.uri"] == mlflow_server
    assert params == {k: str(v) for k, v in Recipe(result_config(result)).params().items()}  # the keys that apply
    assert "tasks.ways" not in params and len(params) < len(to_flat_dict(result_config(result)))

    assert [m.step for m in client.get_metric_history(result.run_id, names.val_score("mse"))] == [0, 10, 20]
    for key in (
        names.META_LOSS,
        names.meta_metric("preadapt_loss"),
        names.THROUGHPUT_TASKS_PER_S,
        names.FIRST_STEP_MS,
        names.shard_compute_ms(0),
        names.shard_compute_ms(1),
        names.val_score("mse"),
    ):
        history = client.get_metric_history(result.run_id, key)
        assert history, key
        assert all(torch.isfinite(torch.tensor(m.value)) for m in history)
    assert [m.step for m in client.get_metric_history(result.run_id, names.META_LOSS)] == [5, 10, 15, 20]
    assert "test/mse.k10.mean" in run.data.metrics
    assert run.data.tags["shard.0.worker"] and run.data.tags["shard.1.worker"]

    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config", "checkpoints", "eval"} <= artifacts
    ckpts = {a.path for a in client.list_artifacts(result.run_id, "checkpoints")}
    assert {"checkpoints/last.ckpt", "checkpoints/best.ckpt"} <= ckpts
    assert "eval/adaptation_curve.png" in {a.path for a in client.list_artifacts(result.run_id, "eval")}

    mlflow.set_tracking_uri(mlflow_server)
    loaded = mlflow.pytorch.load_model(result.model_uri)
    assert isinstance(loaded, torch.nn.Module)
    x = torch.linspace(-5, 5, 11).unsqueeze(1)
    torch.testing.assert_close(loaded(x), result.model(x))


def result_config(result):
    from distmeta import checkpoints
    from distmeta.config import from_yaml_text

    return from_yaml_text(checkpoints.read(result.last_checkpoint)["distmeta"]["config_yaml"])
