"""Contract 3 (driver side): a run stopped at step 50 and resumed to 100 equals an uninterrupted run,
in the same MLflow run, with the same task stream and optimizer state."""

import pytest
import torch
from mlflow.tracking import MlflowClient

from distmeta import checkpoints
from tests.integration.helpers import params_of, rel_diff, small_run

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_resume_from_step_50_equals_uninterrupted_100(workdir, ray_runtime):
    common = ["cluster.num_shards=2", "algorithm.meta_lr=0.005", "checkpoint.every_n_steps=25", "trainer.grad_clip=1.0"]
    full = small_run("trainer.max_steps=100", "checkpoint.dir=full", *common)
    first = small_run("trainer.max_steps=50", "checkpoint.dir=parts", *common)
    ckpt = checkpoints.read(first.last_checkpoint)
    assert ckpt["global_step"] == 50 and ckpt["distmeta"]["run_id"] == first.run_id
    assert ckpt["optimizer_states"][0]["state"], "Adam moments travel in the checkpoint"

    resumed = small_run("trainer.max_steps=100", "checkpoint.dir=parts", *common, resume="last")
    assert resumed.run_id == first.run_id
    assert resumed.checkpoint_dir == first.checkpoint_dir
    assert rel_diff(params_of(resumed), params_of(full)) < 1e-5
    assert rel_diff(params_of(first), params_of(full)) > 1e-3  # the first half alone is not the answer

    client = MlflowClient(resumed.tracking_uri)
    history = client.get_metric_history(resumed.run_id, "meta/loss")
    steps = [m.step for m in history]
    assert sorted(steps) == list(range(5, 101, 5)), "each logging step once, before and after the resume"
    full_history = {m.step: m.value for m in client.get_metric_history(full.run_id, "meta/loss")}
    for m in history:
        assert abs(m.value - full_history[m.step]) <= 1e-5 * abs(full_history[m.step])
    artifacts = {a.path for a in client.list_artifacts(resumed.run_id, "config")}
    assert {"config/config.yaml", "config/resume_step50.yaml"} <= artifacts
    assert client.get_run(resumed.run_id).data.params["trainer.max_steps"] == "50"  # params are immutable


def test_resume_with_another_model_is_refused(workdir, ray_runtime):
    from distmeta.errors import UserError

    first = small_run("trainer.max_steps=3", "cluster.num_shards=0")
    with pytest.raises(UserError, match="model="):
        small_run("trainer.max_steps=6", "cluster.num_shards=0", "model.hidden=[8]", resume=str(first.last_checkpoint))
    assert torch.load(first.last_checkpoint, weights_only=True)["global_step"] == 3
