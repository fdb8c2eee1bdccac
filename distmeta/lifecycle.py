"""A training run's life: every check that can fail without training before its MLflow run
exists, and once it exists, an end status on every way out.

:func:`prepare` refuses bad input (store, device, data, model, checkpoint folder, the checkpoint to
resume) while nothing has been made. :func:`tracked` creates (or reopens) the MLflow run and its
checkpoint folder; leaving it by an exception marks the run FAILED, by a signal
(:class:`distmeta.interrupts.Interrupted`) KILLED, and removes the folder if it holds nothing. A
run is FINISHED by :meth:`TrackedRun.finish` once its results are logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from distmeta import checkpoints, interrupts
from distmeta.errors import UserError
from distmeta.logs import quieter
from distmeta.recipe import Recipe
from distmeta.tracking.announce import announce

if TYPE_CHECKING:
    from distmeta.tracking.adaptive import Served

log = logging.getLogger(__name__)

FLUSH_ON_FAILURE_S = 10.0
"""How long a failed or stopped run waits for its queued metrics (the rest go to a file)."""


@dataclass(frozen=True)
class Start:
    """Where a run starts: its store, and with ``--resume`` the checkpoint, run id and step."""

    uri: str
    checkpoint: Path | None = None
    run_id: str | None = None
    step: int | None = None


def prepare(recipe: Recipe, resume: str | None) -> Start:
    """Everything that can be refused before a run exists: the store, the learner's device, the
    checkpoint folder, every dataset, the model, and with ``resume`` the checkpoint and its run."""
    from distmeta.tracking.store import check_reachable, check_run, resolve_uri

    uri = resolve_uri(recipe.run.tracking_uri)
    ckpt_path = checkpoints.find_resume(resume, recipe.run.checkpoint_dir) if resume else None
    saved = checkpoints.read(ckpt_path) if ckpt_path else None
    if saved and not recipe.run.tracking_uri:  # the run lives in the store it started in
        uri = saved["distmeta"]["tracking_uri"]
    check_reachable(uri, create=not resume)  # a resumed run's store exists: none is made anew
    if recipe.run.learner_device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "cluster.learner_device=cuda but this process sees no CUDA device; use cpu, or run the driver on a GPU node"
        )
    _check_folder(recipe.run.checkpoint_dir)
    recipe.test_families, recipe.training_units, recipe.validation_families  # noqa: B018 (loaded and checked now)
    recipe.model_spec.build()  # e.g. a model that cannot take these inputs: refused here
    if saved is None:
        return Start(uri)
    meta = saved["distmeta"]
    recipe.check_resumable(meta["config_yaml"], ckpt_path)
    checkpoints.resumable(saved, ckpt_path)
    check_run(uri, meta["run_id"], f"checkpoint {ckpt_path}")
    return Start(uri, ckpt_path, meta["run_id"], int(saved.get("global_step", 0)))


def _check_folder(folder: Path) -> None:
    """The checkpoint folder exists (made here if not) and takes files."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"checkpoint.dir={folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"checkpoint.dir={folder} cannot be created: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"checkpoint.dir={folder} is not writable")


class TrackedRun:
    """The MLflow run (through its metrics logger) and the checkpoint folder of one training run."""

    def __init__(self, recipe: Recipe, start: Start):
        from distmeta.tracking import run as tracking_run

        self.recipe, self.uri = recipe, start.uri
        self.logger = tracking_run.make_logger(start.uri, recipe.run.experiment, recipe.run.run_name, start.run_id)
        with quieter("pytorch_lightning.loggers.mlflow"):  # "Experiment ... not found. Creating it": as asked
            self.run_id, self.client = self.logger.run_id, self.logger.experiment
        self.dir = recipe.run.checkpoint_dir.resolve() / self.run_id
        self.metadata = {"run_id": self.run_id, "tracking_uri": start.uri, "config_yaml": recipe.config_yaml,
                         "format": checkpoints.FORMAT}  # fmt: skip
        """Travels in every checkpoint: a resume or an evaluation finds the run from it."""
        self.tags: dict[str, str] = {}
        """Set on the run when its results are published (e.g. the fault totals)."""

    @property
    def last(self) -> Path:
        return self.dir / checkpoints.LAST

    @property
    def best(self) -> Path | None:
        path = self.dir / checkpoints.BEST
        return path if path.is_file() else None

    def finish(self, series: list[tuple[str, int, float]], table: dict[str, list], figure: Path, figure_dir: str,
               model: nn.Module, served: Served | None = None) -> tuple[str, str]:  # fmt: skip
        """Log the evaluation (its curves' ``series``, ``table`` and figure), checkpoints, the
        meta-parameters' model, the adaptive model made of ``served`` and :attr:`tags`, and mark
        the run FINISHED; returns the two models' URIs ("" if the store could not be reached:
        everything is on disk)."""
        from distmeta.tracking import run as tracking_run

        self._report_unsent(self.logger.close(self.recipe.run.flush_timeout_s, self.dir))
        model_uri = adaptive_uri = ""

        def publish() -> None:
            nonlocal model_uri, adaptive_uri
            tracking_run.log_final_evaluation(self.uri, self.run_id, series, table, figure, figure_dir)
            for key, value in self.tags.items():
                self.client.set_tag(self.run_id, key, value)
            tracking_run.log_checkpoints(
                self.client, self.run_id, {"last": self.last, **({"best": self.best} if self.best else {})}
            )
            model_uri = tracking_run.log_model(self.uri, self.run_id, model)
            if served is not None:
                adaptive_uri = self._adaptive(model, served)
            self.client.set_terminated(self.run_id, "FINISHED")

        with interrupts.deferred():
            self._publish(publish, f"the evaluation, checkpoints and models (the checkpoints are in {self.dir})")
        return model_uri, adaptive_uri

    def _adaptive(self, model: nn.Module, served: Served) -> str:
        """The adaptive model's URI, or "" with a warning if it could not be logged (or registered):
        the run's results and its meta-parameters' model are logged already, and it still finishes."""
        from distmeta.tracking import run as tracking_run

        try:
            return tracking_run.log_adaptive_model(self.uri, self.run_id, model, served)
        except Exception as exc:
            log.warning("the adaptive model was not logged (%s: %s); the run's other results were",
                        type(exc).__name__, " ".join(str(exc).split())[:300])  # fmt: skip
            return ""

    def end(self, status: str) -> None:
        """A run that did not finish: its queue gets a short while to drain (the rest is saved
        beside the checkpoints), then ``status`` if the store answers."""
        self._report_unsent(self.logger.close(min(self.recipe.run.flush_timeout_s, FLUSH_ON_FAILURE_S), self.dir))
        self._publish(lambda: self.client.set_terminated(self.run_id, status), f"the run's {status} status")

    def _publish(self, action: Callable[[], None], what: str) -> bool:
        """An MLflow ``action`` after training; if the store is unreachable, a warning instead of
        failing a run whose results are on disk."""
        from distmeta.tracking.store import check_reachable

        try:
            check_reachable(self.uri, create=False)
            action()
            return True
        except Exception as exc:  # an unreachable or failing store: nothing of the training is lost
            log.warning(
                "MLflow at %s cannot be reached or refused (%s: %s); %s were not logged to it",
                self.uri, type(exc).__name__, " ".join(str(exc).split())[:300], what,
            )  # fmt: skip
            return False

    def _report_unsent(self, path: Path | None) -> None:
        if path is not None:
            log.warning(
                "metrics that MLflow at %s did not take before tracking.flush_timeout_s are saved in %s "
                "(JSON lines: key, value, timestamp, step)", self.uri, path,
            )  # fmt: skip


@contextmanager
def tracked(recipe: Recipe, start: Start) -> Iterator[TrackedRun]:
    """The run from its creation on: an exception out of here ends it FAILED, a signal KILLED,
    and removes its checkpoint folder if that holds nothing."""
    from distmeta.tracking import run as tracking_run
    from distmeta.tracking.records import log_records

    with interrupts.deferred():  # the run is not left half-created
        run = TrackedRun(recipe, start)
        print(announce(run.run_id, run.logger.experiment_id, run.uri), flush=True)  # distmeta submit reads it
        try:
            tracking_run.log_config(run.client, run.run_id, recipe.params(), recipe.config_yaml, start.step)
            if start.step is None:  # a new run (a resumed one keeps the records it started with)
                log_records(run.client, run.run_id, recipe.records())
            run.dir.mkdir(parents=True, exist_ok=True)
        except BaseException:
            run.end("FAILED")
            raise
    try:
        yield run
    except BaseException as exc:
        with interrupts.deferred():
            stopped = isinstance(exc, interrupts.Interrupted)
            run.end("KILLED" if stopped else "FAILED")
            _remove_if_empty(run.dir)
            if stopped and run.last.is_file():
                exc.checkpoint = exc.checkpoint or run.last
        raise


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or already gone): it stays
        folder.rmdir()
