"""Small runs of the real training path for integration tests."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import psutil
import torch

import distmeta
from tests.conftest import SINE_CONFIG

SMALL = [
    "trainer.val_every_n_steps=10",
    "trainer.val_tasks=20",
    "trainer.log_every_n_steps=5",
    "trainer.progress_bar=false",
    "evaluation.num_tasks=20",
    "evaluation.query=20",
    "algorithm.compile=false",  # compiled path: tests/shard and tests/test_end_to_end.py
]


def small_run(*overrides: str, resume: str | None = None) -> distmeta.TrainResult:
    cfg = distmeta.load_config(SINE_CONFIG, [*SMALL, *overrides])
    return distmeta.train(cfg, resume=resume)


def params_of(result: distmeta.TrainResult) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in result.model.parameters()])


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


class KillWhileComputing(threading.Thread):
    """Sends ``sig`` (SIGKILL: dead; SIGSTOP: hung) to a shard actor's process while it executes
    ``ShardWorker.compute`` (``ReplicaWorker.replicated_step`` in all-reduce mode): Ray titles a
    worker process ``ray::<Class>.<method>`` while it runs a Ray call (``.__init__`` while it
    starts); a call over the local channel runs in a thread of its own, seen as a busy process."""

    def __init__(self, settle_s: float = 1.0, sig: int = signal.SIGKILL, call: str = "ShardWorker.compute"):
        super().__init__(daemon=True)
        self.settle_s, self.sig, self.killed, self.done = settle_s, sig, None, threading.Event()
        self.actor, self.call = "ray::" + call.split(".")[0], "ray::" + call

    def run(self):
        deadline = time.time() + 120
        actors = []
        while not actors and time.time() < deadline and not self.done.is_set():
            actors = [p for p in psutil.process_iter(["cmdline"]) if self.actor in " ".join(p.info["cmdline"] or [])]
            time.sleep(0.05)
        time.sleep(self.settle_s)
        while self.killed is None and time.time() < deadline and not self.done.is_set():
            for proc in actors:
                try:
                    title = " ".join(proc.cmdline())
                    # an actor still in __init__ (importing torch: busy) is starting, not computing
                    if ".__init__" in title:
                        continue
                    if self.call in title or proc.cpu_percent(interval=0.02) > 50:
                        os.kill(proc.pid, self.sig)
                        self.killed = proc.pid
                        break
                except psutil.NoSuchProcess:
                    continue


def killing_an_actor(train: Callable[[], distmeta.TrainResult], settle_s: float = 2.0) -> distmeta.TrainResult:
    """``train()`` while a shard actor is SIGKILLed mid-call (after ``settle_s``, past the first
    steps); fails unless one was."""
    killer = KillWhileComputing(settle_s=settle_s)
    killer.start()
    try:
        result = train()
    finally:
        killer.done.set()
    assert killer.killed is not None, "an actor was killed while it computed"
    return result
