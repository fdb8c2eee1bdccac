"""Metrics that survive a tracking-server outage.

The learner never waits on MLflow: :class:`OutboxLogger` queues each ``log_metrics`` call and a
sender thread delivers the queue in batches. When the server is unreachable the batch stays at
the head of the queue and is retried with backoff while training goes on; when the server comes
back the backlog is delivered with its original steps and timestamps. At the end the logger
waits a bounded time for the queue to drain; what could not be delivered is written to a JSON
Lines file next to the checkpoints (:meth:`OutboxLogger.close`) so nothing is lost.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Mapping

from mlflow.entities import Metric
from pytorch_lightning.loggers import MLFlowLogger

log = logging.getLogger(__name__)

BATCH = 1000  # MLflow's log_batch limit on metrics per call
UNSENT = "unsent_metrics.jsonl"


class OutboxLogger(MLFlowLogger):
    """Lightning's MLflow logger with a queue and a sender thread in front of ``log_batch``."""

    def __init__(self, *args, max_backoff_s: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._queue: deque[Metric] = deque()
        self._lock = threading.Condition()
        self._closing = False
        self._down_since: float | None = None
        self.max_backoff_s = max_backoff_s
        self._thread = threading.Thread(target=self._send_loop, name="distmeta-mlflow-outbox", daemon=True)
        self._thread.start()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key=re.sub("[^a-zA-Z0-9_/. -]+", "", k), value=float(v), timestamp=now, step=step or 0)
                 for k, v in metrics.items() if not isinstance(v, str)]
        with self._lock:
            self._queue.extend(batch)
            self._lock.notify()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _send_loop(self) -> None:
        backoff = 0.5
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue and self._closing:
                    return
                batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
            try:
                self.experiment.log_batch(run_id=self.run_id, metrics=batch, synchronous=True)
            except Exception as exc:  # unreachable, 5xx, timeouts: keep the batch, try again later
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("MLflow at %s is not answering (%s); training goes on and metrics are kept until it "
                                "does (%d waiting)", self._tracking_uri, type(exc).__name__, self.pending)
                with self._lock:
                    self._lock.wait(timeout=backoff)  # close() wakes it for a last try
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            with self._lock:
                for _ in batch:
                    if self._queue:  # close() may have given up on the queue meanwhile
                        self._queue.popleft()
            if self._down_since is not None:
                log.warning("MLflow at %s answers again after %.0f s; sending the %d metrics kept meanwhile",
                            self._tracking_uri, time.monotonic() - self._down_since, self.pending + len(batch))
                self._down_since = None
            backoff = 0.5

    def close(self, timeout_s: float, spill_dir: Path) -> Path | None:
        """Wait up to ``timeout_s`` for the queue to drain. Metrics still queued then are written to
        ``spill_dir/unsent_metrics.jsonl`` (one metric per line: key, value, timestamp, step),
        whose path is returned; None when everything was delivered."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            while self._queue and time.monotonic() < deadline:
                self._lock.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            left = list(self._queue)
            self._queue.clear()
            self._lock.notify_all()
        if not left:
            return None
        spill_dir.mkdir(parents=True, exist_ok=True)
        path = spill_dir / UNSENT
        with path.open("a") as f:
            for m in left:
                f.write(json.dumps({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}) + "\n")
        return path

    def finalize(self, status: str = "success") -> None:
        """Lightning's end of fit: the run's status is set by :func:`distmeta.api.train` once the
        queue is drained (a server that is down must not fail a finished training)."""
