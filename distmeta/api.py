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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distmeta import checkpoints, config, jobs
from distmeta.config import DistMetaConfig
from distmeta.errors import UserError
from distmeta.evaluation import EvalReport, combine, plot_curves
from distmeta.evaluation import evaluate as run_protocol
from distmeta.evaluation.keys import EVAL_PREFIX
from distmeta.models import family_view
from distmeta.recipe import Recipe

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


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> DistMetaConfig:
    """Schema defaults, then the YAML file, then ``key=value`` overrides; validated."""
    return config.load(path, overrides)


def train(cfg: DistMetaConfig, resume: str | None = None) -> TrainResult:
    """Meta-train ``cfg``; with ``resume`` (a checkpoint path or ``"last"``) continue that run:
    same task stream, optimizer state and MLflow run."""
    from distmeta.tracking import run as tracking_run

    recipe = Recipe.from_config(cfg)
    uri, ckpt_path, run_id, resumed_at = _prepare(recipe, resume)
    logger = tracking_run.make_logger(uri, recipe.run.experiment, recipe.run.run_name, run_id)
    run_id, client = logger.run_id, logger.experiment
    print(jobs.announce(run_id, logger.experiment_id, uri), flush=True)  # distmeta submit reads it from the job's log
    tracking_run.log_config(client, run_id, recipe.params(), recipe.config_yaml, resumed_at)
    run_dir = recipe.run.checkpoint_dir.resolve() / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"run_id": run_id, "tracking_uri": uri, "config_yaml": recipe.config_yaml, "format": checkpoints.FORMAT}
    try:
        model = _fit(recipe, logger, run_dir, metadata, ckpt_path)
        last, best = run_dir / checkpoints.LAST, run_dir / checkpoints.BEST
        best = best if best.is_file() else None
        report, figure = _evaluate(recipe, model, run_dir)
    except BaseException:
        _abort(recipe, logger, client, run_id, run_dir, uri)
        raise
    _report_unsent(logger.close(recipe.run.flush_timeout_s, run_dir), uri)
    model_uri = ""

    def publish() -> None:
        nonlocal model_uri
        tracking_run.log_evaluation(uri, run_id, _eval_metrics(report), figure, FIGURE_ARTIFACT_DIR)
        tracking_run.log_checkpoints(client, run_id, {"last": last, **({"best": best} if best else {})})
        model_uri = tracking_run.log_model(uri, run_id, model)
        client.set_terminated(run_id, "FINISHED")

    _publish(uri, publish, f"the evaluation, checkpoints and model (the checkpoints are in {run_dir})")
    return TrainResult(run_id, uri, run_dir, last, best, report, figure, model, model_uri)


def _prepare(recipe: Recipe, resume: str | None) -> tuple[str, Path | None, str | None, int | None]:
    """Everything that can be refused before a run exists: the store, the learner's device, every
    dataset, the model, and with ``resume`` the checkpoint and its run. Returns the tracking URI,
    the checkpoint to resume from, its run id and step."""
    from distmeta.tracking.store import check_reachable, resolve_uri

    uri = resolve_uri(recipe.run.tracking_uri)
    check_reachable(uri)
    if recipe.run.learner_device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "cluster.learner_device=cuda but this process sees no CUDA device; use cpu, or run the driver on a GPU node"
        )
    recipe.test_families, recipe.training_units, recipe.validation_families  # noqa: B018 (loaded and checked now)
    recipe.model_spec.build()  # e.g. a model that cannot take these inputs: refused here
    if not resume:
        return uri, None, None, None
    ckpt_path = checkpoints.find_resume(resume, recipe.run.checkpoint_dir)
    saved = checkpoints.read(ckpt_path)
    meta = saved["distmeta"]
    recipe.check_resumable(meta["config_yaml"], ckpt_path)
    checkpoints.resumable(saved, ckpt_path)
    if not recipe.run.tracking_uri:  # the run lives in the store it started in
        uri = meta["tracking_uri"]
        check_reachable(uri)
    return uri, ckpt_path, meta["run_id"], int(saved.get("global_step", 0))


def _fit(recipe: Recipe, logger, run_dir: Path, metadata: dict, ckpt_path: Path | None) -> nn.Module:
    """Train in the recipe's runtime; the last checkpoint holds the full state (a later --resume continues it)."""
    from distmeta.learner.module import MetaLearner

    client, run_id = logger.experiment, logger.run_id
    with recipe.runtime():
        group = recipe.shard_group()
        try:
            client.set_tag(run_id, "distmeta.batching", recipe.batching)  # what `auto` chose
            for k, info in enumerate(group.workers_info()):
                client.set_tag(run_id, f"shard.{k}.worker", f"{info['host']} pid {info['pid']} {info['device']}")
                for key in ("node", "gpus"):
                    if info.get(key):
                        client.set_tag(run_id, f"shard.{k}.{key}", info[key])
            model = recipe.model()
            learner = MetaLearner(model, group, recipe.learner_settings, recipe.validation_families, metadata)
            trainer = recipe.trainer(logger, run_dir)
            trainer.fit(learner, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
            trainer.save_checkpoint(run_dir / checkpoints.LAST, weights_only=False)
        finally:
            group.close()
    return model


def _abort(recipe: Recipe, logger, client, run_id: str, run_dir: Path, uri: str) -> None:
    """No run is left RUNNING and no metric vanishes: the queue gets a short while to drain (the
    rest is saved beside the checkpoints), then the run is marked FAILED if the store answers."""
    _report_unsent(logger.close(min(recipe.run.flush_timeout_s, 10.0), run_dir), uri)
    _publish(uri, lambda: client.set_terminated(run_id, "FAILED"), "the run's FAILED status")


def _publish(uri: str, action, what: str) -> bool:
    """Run an MLflow ``action`` after training; if the store is unreachable, warn instead of
    failing a finished run (what was trained is on disk)."""
    from distmeta.tracking.store import check_reachable

    try:
        check_reachable(uri)
        action()
        return True
    except Exception as exc:  # an unreachable or failing store: nothing of the training is lost
        log.warning(
            "MLflow at %s cannot be reached (%s: %s); %s were not logged to it",
            uri, type(exc).__name__, " ".join(str(exc).split())[:300], what,
        )  # fmt: skip
        return False


def _report_unsent(path: Path | None, uri: str) -> None:
    if path is not None:
        log.warning(
            "metrics that MLflow at %s did not take before tracking.flush_timeout_s are saved in %s "
            "(JSON lines: key, value, timestamp, step)", uri, path,
        )  # fmt: skip


def evaluate(checkpoint: str | os.PathLike, overrides: Sequence[str] = (), log_to_mlflow: bool = True) -> tuple[EvalReport, Path]:
    """Run the meta-test protocol on a checkpoint's meta-parameters; ``overrides`` adjust its
    config (e.g. ``evaluation.num_tasks=1000``). Logs metrics and the figure to the checkpoint's
    MLflow run when ``log_to_mlflow`` and the store is reachable."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {checkpoint}")
    ckpt = checkpoints.read(path)
    meta = ckpt["distmeta"]
    recipe = Recipe.from_config(config.from_yaml_text(meta["config_yaml"], overrides))
    model = recipe.model()
    try:
        model.load_state_dict(checkpoints.model_state(ckpt))
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not match its own model config: {str(exc).splitlines()[0]}") from None
    report, figure = _evaluate(recipe, model, path.parent)
    if log_to_mlflow:
        from distmeta.tracking.run import log_evaluation
        from distmeta.tracking.store import check_reachable

        check_reachable(meta["tracking_uri"])
        log_evaluation(meta["tracking_uri"], meta["run_id"], _eval_metrics(report), figure, FIGURE_ARTIFACT_DIR)
    return report, figure


def _evaluate(recipe: Recipe, model: nn.Module, out_dir: Path) -> tuple[EvalReport, Path]:
    """Each family's own protocol (its shots; with per-family heads its own head); a mixture's
    reports are combined into one table, drawn as the adaptation figure in ``out_dir``."""
    reports = {}
    for f in recipe.test_families:
        plan = recipe.evaluation_plan(f.name)
        reports[f.name] = run_protocol(
            recipe.algorithm, family_view(model, f.name), f, seed=recipe.run.evaluation_seed,
            num_tasks=recipe.run.evaluation_tasks, shots=plan.shots, steps=plan.steps, query=plan.query,
        )  # fmt: skip
    report = combine(reports) if recipe.run.mixture else next(iter(reports.values()))
    return report, plot_curves(report, out_dir / FIGURE_ARTIFACT_DIR / "adaptation_curve.png")


def _eval_metrics(report: EvalReport) -> dict[str, float]:
    return {EVAL_PREFIX + k: v for k, v in report.values.items()}
