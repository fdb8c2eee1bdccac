"""The metrics outbox against a real store: metrics arrive with their steps; while an ``mlflow
server`` is down they are kept and later delivered with their original steps and timestamps; what
is never delivered (the server stays down, or it refuses the batch) is written to a JSON Lines file
by ``close``. Every wait is bounded; the server binds to 127.0.0.1 and is stopped at teardown."""

from __future__ import annotations

import json
import time

import pytest
from mlflow.tracking import MlflowClient

from distmeta.tracking.outbox import UNSENT
from tests.conftest import MlflowServer

from .waits import wait_until

KEYS = ("meta/loss", "meta/val_mse", "shard/0/compute_ms")
START_S = 240  # an mlflow server takes from seconds to over a minute to start on a busy 2-core machine
DELIVERY_S = 60


def _log_steps(logger, steps) -> dict[int, tuple[int, int]]:
    """Log every key at each step (value = step + key index / 10); the wall-clock window of each call (ms)."""
    windows = {}
    for step in steps:
        before = int(time.time() * 1000)
        logger.log_metrics({k: step + i / 10 for i, k in enumerate(KEYS)}, step=step)
        windows[step] = (before, int(time.time() * 1000))
        time.sleep(0.002)
    return windows


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float, int]]:
    return sorted((m.step, m.value, m.timestamp) for m in MlflowClient(uri).get_metric_history(run_id, key))


def _outbox(new_logger, uri: str, name: str):
    """A logger as ``train`` makes it, its run created up front; backoff capped at 1 s so a returning
    server is noticed within the test's waits."""
    logger = new_logger(uri, "outbox-tests", name)
    assert logger.run_id
    logger.max_backoff_s = 1.0
    return logger


def test_string_values_are_dropped_and_keys_made_valid(sqlite_uri, new_logger, tmp_path):
    """Against a sqlite store: non-numeric values are not sent, characters MLflow refuses in a key
    are removed, a missing step is 0; ``close`` returns None once all arrived."""
    logger = _outbox(new_logger, sqlite_uri, "clean-keys")
    logger.log_metrics({"meta/loss": 2, "note": "text", "val@acc!": 0.5})
    assert wait_until(lambda: logger.pending == 0, DELIVERY_S)
    assert logger.close(10.0, tmp_path) is None
    assert not (tmp_path / UNSENT).exists()
    metrics = MlflowClient(sqlite_uri).get_run(logger.run_id).data.metrics
    assert metrics == {"meta/loss": 2.0, "valacc": 0.5}
    assert [m.step for m in MlflowClient(sqlite_uri).get_metric_history(logger.run_id, "valacc")] == [0]


def test_a_flush_returns_once_everything_logged_so_far_is_in_the_store(sqlite_uri, new_logger, tmp_path):
    """What a checkpoint waits for: after ``flush`` every metric logged before it can be read back."""
    logger = _outbox(new_logger, sqlite_uri, "flush")
    _log_steps(logger, range(1, 6))
    assert logger.flush(30.0)
    assert logger.pending == 0
    assert not logger._stalled
    for i, key in enumerate(KEYS):
        assert [(s, v) for s, v, _ in _history(sqlite_uri, logger.run_id, key)] == [(s, s + i / 10) for s in range(1, 6)]
    assert logger.close(10.0, tmp_path) is None


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory, migrated_store):
    """One ``mlflow server`` for this module's tests, started when a test first needs it; tests may
    stop it (an outage) and start it again on the same port and store. Stopped at teardown."""
    server = MlflowServer(tmp_path_factory.mktemp("outbox_server"), store=migrated_store)
    yield server
    server.stop()


@pytest.fixture
def server(server_factory) -> MlflowServer:
    """The module's server, running when the test starts."""
    if server_factory.proc is None or server_factory.proc.poll() is not None:
        server_factory.start(timeout_s=START_S)
    return server_factory


@pytest.mark.slow
@pytest.mark.timeout(START_S + 120)
def test_metrics_arrive_with_their_steps(server, new_logger, tmp_path):
    """Server up: every metric arrives once, at its step, with its value; nothing is left to spill."""
    logger = _outbox(new_logger, server.uri, "up")
    _log_steps(logger, range(1, 21))
    assert wait_until(lambda: logger.pending == 0, DELIVERY_S), "the queue drains while the server is up"
    for i, key in enumerate(KEYS):
        assert [(s, v) for s, v, _ in _history(server.uri, logger.run_id, key)] == [(s, s + i / 10) for s in range(1, 21)]
    assert logger.close(10.0, tmp_path) is None
    assert not (tmp_path / UNSENT).exists()


@pytest.mark.slow
@pytest.mark.timeout(2 * START_S + 120)
def test_metrics_logged_during_an_outage_arrive_with_original_steps_and_timestamps(server, new_logger, tmp_path, caplog):
    """Server stopped: metrics are kept (``pending``), the learner is not blocked; started again on
    the same port, the backlog arrives once each, with the steps and times at which it was logged."""
    logger = _outbox(new_logger, server.uri, "outage")
    windows = _log_steps(logger, [1])
    assert wait_until(lambda: logger.pending == 0, DELIVERY_S)
    server.stop()
    started = time.monotonic()
    windows |= _log_steps(logger, range(2, 7))
    assert time.monotonic() - started < 1.0, "log_metrics does not wait for the server"
    assert wait_until(lambda: "is not answering" in caplog.text, 30), "the sender tried and failed"
    asked = time.monotonic()
    assert logger.flush(30.0) is False and time.monotonic() - asked < 1.0, "a checkpoint's flush does not wait on an outage"
    time.sleep(1.0)
    assert logger.pending == 5 * len(KEYS), "the outage's metrics are kept, none dropped"
    restarted_ms = int(time.time() * 1000)
    server.start(timeout_s=START_S)
    assert wait_until(lambda: logger.pending == 0, DELIVERY_S), "the backlog is delivered once the server is back"
    assert "answers again" in caplog.text
    for i, key in enumerate(KEYS):
        history = _history(server.uri, logger.run_id, key)
        assert [(s, v) for s, v, _ in history] == [(s, s + i / 10) for s in range(1, 7)], "each point once, at its step"
        for step, _, timestamp in history:
            low, high = windows[step]
            assert low <= timestamp <= high < restarted_ms, f"{key} step {step}: the time it was logged, not sent"
    assert logger.close(10.0, tmp_path) is None


@pytest.mark.slow
@pytest.mark.timeout(START_S + 120)
def test_a_refused_batch_is_not_retried_and_is_saved_at_close(server, new_logger, tmp_path, caplog):
    """A deleted run: the server answers 400 (INVALID_PARAMETER_VALUE, run not active). The batch
    leaves the queue at once instead of blocking later metrics, and ``close`` writes it to the file."""
    logger = _outbox(new_logger, server.uri, "refused")
    client = MlflowClient(server.uri)
    client.delete_run(logger.run_id)
    _log_steps(logger, [1])
    assert wait_until(lambda: logger.pending == 0, DELIVERY_S), "a refused batch is not retried"
    assert "refused" in caplog.text and "INVALID_PARAMETER_VALUE" in caplog.text
    client.restore_run(logger.run_id)
    _log_steps(logger, [2])
    assert wait_until(lambda: logger.pending == 0, DELIVERY_S), "metrics after a refusal still go out"
    assert [s for s, _, _ in _history(server.uri, logger.run_id, KEYS[0])] == [2]
    path = logger.close(10.0, tmp_path)
    assert path == tmp_path / UNSENT
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((r["key"], r["step"], r["value"]) for r in rows) == sorted((k, 1, 1 + i / 10) for i, k in enumerate(KEYS))


@pytest.mark.slow
@pytest.mark.timeout(START_S + 120)
def test_close_with_the_server_down_writes_the_unsent_metrics(server, new_logger, tmp_path):
    """``close`` gives up after its timeout and writes one JSON line per undelivered metric (key,
    value, timestamp, step) to ``unsent_metrics.jsonl`` in the given folder, whose path it returns."""
    logger = _outbox(new_logger, server.uri, "down-at-close")
    _log_steps(logger, [1])
    assert wait_until(lambda: logger.pending == 0, DELIVERY_S)
    server.stop()  # left down: the module's next test (if any) starts it again
    windows = _log_steps(logger, [2, 3])
    spill = tmp_path / "run_dir"
    started = time.monotonic()
    path = logger.close(3.0, spill)
    assert time.monotonic() - started < 3.0 + 2.0, "close is bounded by its timeout"
    assert path == spill / UNSENT and path.is_file()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) == {"key", "value", "timestamp", "step"} for r in rows)
    expected = sorted((k, s, s + i / 10) for s in (2, 3) for i, k in enumerate(KEYS))
    assert sorted((r["key"], r["step"], r["value"]) for r in rows) == expected, "every undelivered metric, once"
    for r in rows:
        assert windows[r["step"]][0] <= r["timestamp"] <= windows[r["step"]][1]
