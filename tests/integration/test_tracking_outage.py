"""The tracking server goes away mid-run: training goes on, metrics wait and are delivered when it
comes back; if it never does, the run still finishes, with its checkpoints and the undelivered
metrics on disk."""

import json
import threading
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from distmeta.tracking import names
from tests.conftest import MlflowServer
from tests.integration.helpers import params_of, rel_diff, small_run

pytestmark = [pytest.mark.slow]

RUN = [
    "cluster.num_shards=0",
    "trainer.max_steps=200",
    "trainer.log_every_n_steps=10",
    "trainer.val_every_n_steps=100",
    "checkpoint.every_n_steps=50",
    "algorithm.meta_lr=0.001",
]


def _when_running(server: MlflowServer, workdir, action) -> threading.Thread:
    """``action()`` once the run has written its first checkpoint (so it is well under way)."""

    def watch():
        deadline = time.time() + 300
        while not list(workdir.glob("checkpoints/*/last.ckpt")) and time.time() < deadline:
            time.sleep(0.05)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_metrics_logged_during_an_outage_arrive_when_the_server_returns(workdir, tmp_path_factory, caplog, migrated_store):
    server = MlflowServer(tmp_path_factory.mktemp("outage"), store=migrated_store).start()
    try:

        def outage():
            server.stop(sig=9)  # a crash, not a clean shutdown
            time.sleep(4.0)
            server.start()

        watcher = _when_running(server, workdir, outage)
        result = small_run(*RUN, f"tracking.uri={server.uri}")
        watcher.join(timeout=120)
        assert "is not answering" in caplog.text and "answers again" in caplog.text, "the outage happened during training"
        client = MlflowClient(server.uri)
        steps = [m.step for m in client.get_metric_history(result.run_id, names.meta_metric("loss"))]
        assert sorted(steps) == list(range(10, 201, 10)), "every logged point arrived, once"
        run = client.get_run(result.run_id)
        assert run.info.status == "FINISHED" and "test/mse.k10.mean" in run.data.metrics
        assert not list(workdir.glob("checkpoints/*/unsent_metrics.jsonl"))
    finally:
        server.stop()
    reference = small_run(*RUN, f"checkpoint.dir={workdir / 'ref'}")  # into the working folder's store
    assert rel_diff(params_of(result), params_of(reference)) < 1e-6, "the outage did not touch the training"


def test_a_server_that_never_returns_leaves_a_finished_run_on_disk(workdir, tmp_path_factory, caplog, migrated_store):
    server = MlflowServer(tmp_path_factory.mktemp("gone"), store=migrated_store).start()
    watcher = _when_running(server, workdir, lambda: server.stop(sig=9))
    try:
        result = small_run(*RUN, f"tracking.uri={server.uri}", "tracking.flush_timeout_s=3")
    finally:
        watcher.join(timeout=60)
        server.stop()
    assert result.last_checkpoint.is_file()
    assert torch.load(result.last_checkpoint, weights_only=True)["global_step"] == 200
    unsent = result.checkpoint_dir / "unsent_metrics.jsonl"
    rows = [json.loads(line) for line in unsent.read_text().splitlines()]
    loss_steps = {r["step"] for r in rows if r["key"] == names.meta_metric("loss")}
    assert 200 in loss_steps, "the metrics logged after the outage are saved, not lost"
    assert f"MLflow at {server.uri} cannot be reached" in caplog.text and "were not logged" in caplog.text
    assert result.model_uri == ""
