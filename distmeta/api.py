"""The Python API: ``load_config``, ``train``, ``evaluate``. The CLI is a thin layer over these.

import distmeta
cfg = distmeta.load_config("configs/sine_maml.yaml", ["trainer.max_steps=2000"])
result = distmeta.train(cfg)
print(result.run_id, result.evaluation.values["mse.k10.steps1.mean"])  # acc.k1.steps10.mean for images
report = distmeta.evaluate(result.last_checkpoint)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from distmeta import checkpoints, config, interrupts, lifecycle, runtime
from distmeta.config import DistMetaConfig
from distmeta.errors import NonFiniteGradientError, UserError
from distmeta.evaluation import EvalReport, combine, plot_curves
from distmeta.evaluation import evaluate as run_protocol
from distmeta.evaluation.keys import EVAL_PREFIX
from distmeta.evaluation.paths import plot_paths
from distmeta.models import family_view
from distmeta.recipe import Recipe
from distmeta.tracking import names

if TYPE_CHECKING:
    from distmeta.tracking.run import EvaluationRecord

log = logging.getLogger(__name__)

FIGURE_ARTIFACT_DIR = "eval"


@dataclass
class TrainResult:
    run_id: str
    tracking_uri: str
    checkpoint_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    evaluation: EvalReport
    figure: Path
    model: nn.Module
    model_uri: str
    """The meta-parameters (``mlflow.pytorch.load_model``: the ``nn.Module``)."""
    adaptive_model_uri: str = ""
    """The model that adapts (``mlflow.pyfunc.load_model``: support sets and queries in, adapted
    query predictions out); empty for an algorithm or head layout it cannot serve."""
    train_seconds: float = 0.0
    """The training loop's wall time (this start's: a resumed run's own part)."""
    experiment_id: str = ""


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> DistMetaConfig:
    """Schema defaults, then the YAML file, then ``key=value`` overrides; validated."""
    return config.load(path, overrides)


def train(cfg: DistMetaConfig, resume: str | None = None) -> TrainResult:
    """Meta-train ``cfg``; with ``resume`` (a checkpoint path or ``"last"``) continue that run:
    same task stream, optimizer state and MLflow run. SIGINT or SIGTERM stop it at the next step
    boundary with a checkpoint of that step (:class:`distmeta.interrupts.Interrupted` says where)."""
    recipe = Recipe.from_config(cfg)
    with interrupts.handled():
        start = lifecycle.prepare(recipe, resume)  # refused before anything exists
        with interrupts.deferred(), recipe.ray_session():
            interrupts.install()  # Ray's start-up replaced the SIGTERM handler with its own
            interrupts.check()  # stopped during start-up: no run was made
            group = recipe.shard_group()
            with runtime.releasing(group):
                interrupts.check()
                with lifecycle.tracked(recipe, start) as run:
                    started = time.perf_counter()
                    model = _fit(recipe, run, group, start.checkpoint)
                    seconds = time.perf_counter() - started
                    group.close()  # the actors' resources are free before the evaluation
                    with interrupts.immediate():
                        report, figure = _evaluate(recipe, model, lambda _: run.dir)
                    uris = run.finish(_series(report), report.columns(), figure, FIGURE_ARTIFACT_DIR, model, recipe.served())
    return TrainResult(run.run_id, run.uri, run.dir, run.last, run.best, report, figure, model, *uris, seconds,
                       run.logger.experiment_id)  # fmt: skip


def _fit(recipe: Recipe, run: lifecycle.TrackedRun, group, ckpt_path: Path | None) -> nn.Module:
    """Train with the recipe's shard group; the last checkpoint holds the full state (a later
    --resume continues it), also when a signal stopped the loop early."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from distmeta.learner.module import MetaLearner
    from distmeta.recipe.progress import quiet_lightning

    client, run_id = run.client, run.run_id
    client.set_tag(run_id, "distmeta.batching", recipe.batching)  # what `auto` chose
    if getattr(group, "backend", None):  # all-reduce mode: what cluster.collective=auto chose
        client.set_tag(run_id, "distmeta.collective", group.backend)
    for k, info in enumerate(group.workers_info()):
        client.set_tag(run_id, f"shard.{k}.worker", f"{info['host']} pid {info['pid']} {info['device']}")
        for key in ("node", "gpus"):
            if info.get(key):
                client.set_tag(run_id, f"shard.{k}.{key}", info[key])
    model = recipe.model()
    learner = MetaLearner(model, group, recipe.learner_settings, recipe.validation_families, run.metadata)
    with runtime.learner_threads(recipe.run.num_shards), quiet_lightning():
        trainer = recipe.trainer(run.logger, run.dir)
        try:
            trainer.fit(learner, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        except NonFiniteGradientError as exc:  # stopped before the update: say what is left to go back to
            saved = sorted(run.dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
            kept = f"the newest checkpoint is {saved[-1]}" if saved else "no checkpoint was written before it"
            raise NonFiniteGradientError(f"{exc}; the update was not applied and {kept}") from None
        except SIGTERMException:  # Lightning's own handler, active until the learner's first hook, saw it
            if not interrupts.requested():  # ours runs inside Lightning's: it has recorded the stop too
                raise
    trainer.save_checkpoint(run.last, weights_only=False)
    run.tags.update({names.fault_tag(k): str(int(v)) for k, v in learner.fault_totals().items()})
    if interrupts.requested():
        raise interrupts.Interrupted(interrupts.requested(), step=trainer.global_step, checkpoint=run.last)
    return model


def evaluate(
    checkpoint: str | os.PathLike,
    overrides: Sequence[str] = (),
    log_to_mlflow: bool = True,
    on_report: Callable[[EvalReport, Path, EvaluationRecord | None], None] | None = None,
) -> tuple[EvalReport, Path]:
    """Run the meta-test protocol on a checkpoint's meta-parameters (a ``.ckpt`` file or a run's
    checkpoint folder); ``overrides`` adjust its config (e.g. ``evaluation.num_tasks=1000``;
    ``tracking.uri=...`` names the store to log to instead of the one the checkpoint recorded).
    Each evaluation is a record of its own: its figure in a new folder under the checkpoint's
    ``evaluations/``, and with ``log_to_mlflow`` a run nested under the checkpoint's training run
    (which must be in the store: checked first); the training run's own results stay as logged.
    ``on_report`` sees the results and where they were logged (None: not logged), also when
    logging failed."""
    path = checkpoints.find(checkpoint)
    ckpt = checkpoints.read(path)
    meta = ckpt["distmeta"]
    recipe = Recipe.from_config(config.from_yaml_text(meta["config_yaml"], overrides))
    uri = meta["tracking_uri"]
    if any(o.startswith("tracking.uri=") for o in overrides):
        from distmeta.tracking.store import resolve_uri

        uri = resolve_uri(recipe.run.tracking_uri)
    if log_to_mlflow:
        from distmeta.tracking.store import check_reachable, check_run

        check_reachable(uri, create=False)  # a store that is gone is not made anew
        check_run(uri, meta["run_id"], f"checkpoint {path}")
    model = recipe.model()
    try:
        model.load_state_dict(checkpoints.model_state(ckpt))
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        made = f"the config with overrides {' '.join(overrides)}" if overrides else "its own config"
        raise UserError(f"checkpoint {path} holds another network than {made} builds: {detail}") from None
    with interrupts.handled():
        report, figure = _evaluate(recipe, model, lambda r: _evaluation_folder(path, r))
    record = None
    if log_to_mlflow:
        from distmeta.tracking.run import log_evaluation
        from distmeta.tracking.store import check_reachable

        params = {"checkpoint": str(path), "checkpoint.step": str(ckpt.get("global_step", "")),
                  "evaluation.num_tasks": str(report.num_tasks), "evaluation.shots": _listed(report.shots),
                  "evaluation.steps": _listed(report.steps), "evaluation.seed": str(recipe.run.evaluation_seed),
                  "overrides": " ".join(overrides)}  # fmt: skip
        try:
            check_reachable(uri, create=False)  # gone meanwhile: no new store is made
            record = log_evaluation(uri, meta["run_id"], figure.parent.parent.name, params, _series(report),
                                    report.columns(), figure, FIGURE_ARTIFACT_DIR)  # fmt: skip
        except Exception as exc:  # the store went away while evaluating: the numbers are still reported
            if on_report is not None:
                on_report(report, figure, None)
            raise UserError(
                f"the evaluation was not logged to MLflow run {meta['run_id']} at {uri}: {' '.join(str(exc).split())[:300]}"
            ) from None
    if on_report is not None:
        on_report(report, figure, record)
    return report, figure


def _listed(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in values)


def _evaluation_folder(checkpoint: Path, report: EvalReport) -> Path:
    """A new folder for one evaluation, named by its settings and the time it ran:
    ``evaluations/last-tasks50-k5,10,20-steps0,1,5,10-20261204T233000Z`` beside the checkpoint."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{checkpoint.stem}-tasks{report.num_tasks}-k{_listed(report.shots)}-steps{_listed(report.steps)}-{stamp}"
    folder, n = checkpoint.parent / "evaluations" / name, 1
    while folder.exists():  # two in one second
        n += 1
        folder = checkpoint.parent / "evaluations" / f"{name}-{n}"
    return folder


def _evaluate(recipe: Recipe, model: nn.Module, folder: Callable[[EvalReport], Path]) -> tuple[EvalReport, Path]:
    """Each family's own protocol (its shots; with per-family heads its own head); a mixture's
    reports are combined into one table, drawn as the adaptation figure in ``folder(report)``."""
    reports = {}
    for f in recipe.test_families:
        plan = recipe.evaluation_plan(f.name)
        reports[f.name] = run_protocol(
            recipe.algorithm, family_view(model, f.name), f, seed=recipe.run.evaluation_seed,
            num_tasks=recipe.run.evaluation_tasks, shots=plan.shots, steps=plan.steps, query=plan.query,
        )  # fmt: skip
    report = combine(reports) if recipe.run.mixture else next(iter(reports.values()))
    figures = folder(report) / FIGURE_ARTIFACT_DIR
    if recipe.algorithm.collects:  # meta-RL: where the agent goes, as well as what it earns
        for f in recipe.test_families:
            plan = recipe.evaluation_plan(f.name)
            plot_paths(recipe.algorithm, family_view(model, f.name), f, seed=recipe.run.evaluation_seed, steps=plan.steps,
                       path=figures / f"paths_{f.name}.png")  # fmt: skip
    return report, plot_curves(report, figures / "adaptation_curve.png")


def _series(report: EvalReport) -> list[tuple[str, int, float]]:
    """The adaptation curves as MLflow series (``test/mse.k10.mean`` at each number of inner steps)."""
    return [(EVAL_PREFIX + key, steps, value) for key, steps, value in report.series()]
