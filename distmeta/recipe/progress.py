"""What training shows on the console: Lightning's bar on a terminal, one line every so many
steps elsewhere (a log file, a pipe); in both the rate and ETA count from the second step on,
since the first one compiles. And Lightning's own chatter, kept out of the run's output."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from pytorch_lightning.callbacks import Callback, TQDMProgressBar

from distmeta.logs import quieter

LINES_PER_RUN = 20
"""Off a terminal: about this many progress lines in a run (and one more at its end)."""


class TerminalBar(TQDMProgressBar):
    """Lightning's bar, whose rate (and so its ETA) leaves out the first step."""

    _timed = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar = self.train_progress_bar
        if not self._timed and not bar.disable:  # the first step since the start: tqdm's rate counts from now
            self._timed, bar.initial, bar.start_t = True, batch_idx + 1, time.time()


class ProgressLines(Callback):
    """``step 1800/36000 (5%)  loss 0.512  val_mse 0.480  3,150 tasks/s  ETA 0:03:05`` every
    ``every`` meta-steps and at the last; ``loss`` and the validation score are the latest logged."""

    def __init__(self, every: int, tasks_per_step: int, score: str, out=None):
        self.every, self.tasks_per_step, self.score = every, tasks_per_step, f"val_{score}"
        self.out = out
        self._start: tuple[float, int] | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self._start is None:  # the first step since the start compiled: the clock starts after it
            self._start = (time.perf_counter(), step)
            return
        if step % self.every == 0 or step >= trainer.max_steps:
            print(self.line(trainer, step), file=self.out or sys.stdout, flush=True)

    def line(self, trainer, step: int) -> str:
        started, first = self._start
        rate = (step - first) / max(time.perf_counter() - started, 1e-9)
        parts = [f"step {step}/{trainer.max_steps} ({100 * step // trainer.max_steps}%)"]
        metrics = trainer.callback_metrics
        for key in ("loss", self.score):
            if key in metrics:
                parts.append(f"{key} {float(metrics[key]):.4g}")
        eta = int((trainer.max_steps - step) / rate) if rate > 0 else 0
        parts += [f"{rate * self.tasks_per_step:,.0f} tasks/s", f"ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"]
        return "  ".join(parts)


def progress_callback(max_steps: int, log_every: int, tasks_per_step: int, score: str, terminal: bool | None = None):
    """The bar on a terminal (``terminal``: whether stdout is one), else :class:`ProgressLines`
    about :data:`LINES_PER_RUN` times a run, at logged steps (where the loss is new)."""
    if sys.stdout.isatty() if terminal is None else terminal:
        return TerminalBar(refresh_rate=max(1, min(100, log_every)))
    every = max(log_every, max_steps // LINES_PER_RUN // log_every * log_every)
    return ProgressLines(every, tasks_per_step, score)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """While distmeta builds and fits its Trainer: none of Lightning's start-up notes (devices it
    does not use, a tip to install another logger, the one validation batch it is told to run,
    the ``max_steps`` it stopped at) and not the deprecation warning its own pytree code raises
    under torch 2.13. Its warnings otherwise stay."""
    with quieter("pytorch_lightning.utilities.rank_zero", logging.WARNING), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
        yield
