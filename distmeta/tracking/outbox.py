"""Metrics that survive a tracking-server outage.

The learner does not wait on MLflow to log: :class:`OutboxLogger` queues each ``log_metrics``
call and a sender thread delivers the queue in batches. Only a checkpoint waits, a bounded time
(:meth:`OutboxLogger.flush`), for what was logged before it. When the server is unreachable the batch stays at
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
from collections.abc import Mapping
from pathlib import Path

from mlflow.entities import Metric
from pytorch_lightning.loggers import MLFlowLogger

log = logging.getLogger(__name__)

BATCH = 1000  # MLflow's log_batch limit on metrics per call
UNSENT = "unsent_metrics.jsonl"


def _refused(exc: Exception) -> bool:
    """A 4xx answer (other than 429, too many requests): the server is up and said no."""
    status = getattr(exc, "get_http_status_code", lambda: None)()
    return isinstance(status, int) and 400 <= status < 500 and status != 429


class OutboxLogger(MLFlowLogger):
    """Lightning's MLflow logger with a queue and a sender thread in front of ``log_batch``."""

    def __init__(self, *args, max_backoff_s: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._queue: deque[Metric] = deque()
        self._inflight: list[Metric] = []  # the batch being sent, out of the queue meanwhile
        self._rejected: list[Metric] = []  # refused by the server (4xx): never retried, saved at close
        self._lock = threading.Condition()
        self._closing = threading.Event()  # also ends a backoff wait early (new metrics do not)
        self._down_since: float | None = None
        self._stalled = False  # a flush gave up waiting; cleared by the next delivery
        self._abandoned = False
        self.max_backoff_s = max_backoff_s
        self._thread = threading.Thread(target=self._send_loop, name="distmeta-mlflow-outbox", daemon=True)
        self._thread.start()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        batch = [
            Metric(key=re.sub("[^a-zA-Z0-9_/. -]+", "", k), value=float(v), timestamp=now, step=step or 0)
            for k, v in metrics.items()
            if not isinstance(v, str)
        ]
        with self._lock:
            self._queue.extend(batch)
            self._lock.notify_all()  # the sender, and a flush waiting on the same condition

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._inflight)

    def _send_loop(self) -> None:
        backoff = 0.5
        while True:
            with self._lock:
                while not self._queue and not self._closing.is_set():
                    self._lock.wait()
                if not self._queue or self._abandoned:
                    return
                self._inflight = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                batch = self._inflight
            try:
                self.experiment.log_batch(run_id=self.run_id, metrics=batch, synchronous=True)
            except Exception as exc:
                if _refused(exc):  # the server answered "no" (e.g. a deleted run): retrying cannot help
                    log.warning(
                        "MLflow at %s refused %d metrics (%s); they are saved at the end instead",
                        self._tracking_uri,
                        len(batch),
                        " ".join(str(exc).split())[:200],
                    )
                    with self._lock:
                        self._rejected.extend(batch)
                        self._inflight = []
                    continue
                # unreachable, 5xx, timeouts: the batch goes back to the front, tried again later
                with self._lock:
                    self._queue.extendleft(reversed(batch))
                    self._inflight = []
                    first = self._down_since is None
                    if first:
                        self._down_since = time.monotonic()
                    self._lock.notify_all()  # a flush waiting on this batch stops waiting
                if first:
                    log.warning(
                        "MLflow at %s is not answering (%s); training goes on and metrics are kept until it does (%d waiting)",
                        self._tracking_uri,
                        type(exc).__name__,
                        self.pending,
                    )
                if self._closing.is_set():
                    time.sleep(0.5)  # closing: keep trying until close() gives up
                elif not self._closing.wait(timeout=backoff):
                    backoff = min(backoff * 2, self.max_backoff_s)
                continue
            with self._lock:
                self._inflight = []
                self._stalled = False
                self._lock.notify_all()
            if self._down_since is not None:
                log.warning(
                    "MLflow at %s answers again after %.0f s; sending the %d metrics kept meanwhile",
                    self._tracking_uri,
                    time.monotonic() - self._down_since,
                    self.pending + len(batch),
                )
                self._down_since = None
            backoff = 0.5

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait up to ``timeout_s`` for everything queued so far to be delivered, unless the
        server is known to be down or a flush already gave up since the last delivery (training
        waits on an outage once at most, before it is detected). True when delivered."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while (self._queue or self._inflight) and self._down_since is None and not self._stalled:
                if time.monotonic() >= deadline:
                    self._stalled = True
                    break
                self._lock.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            return not (self._queue or self._inflight)

    def close(self, timeout_s: float, spill_dir: Path) -> Path | None:
        """Wait up to ``timeout_s`` for the queue to drain. Metrics still queued then are written to
        ``spill_dir/unsent_metrics.jsonl`` (one metric per line: key, value, timestamp, step),
        whose path is returned; None when everything was delivered."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._closing.set()
            self._lock.notify_all()
            while (self._queue or self._inflight) and time.monotonic() < deadline:
                self._lock.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            # a batch still in flight may yet arrive: then it is in MLflow and in the file both
            left = self._rejected + self._inflight + list(self._queue)
            self._queue.clear()
            self._rejected = []
            self._abandoned = bool(left)  # the sender stops: what it held is in the file
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
