"""The Python API: ``load_config``, ``train``, ``evaluate``. The CLI is a thin layer over these.

import distmeta
cfg = distmeta.load_config("configs/sine_maml.yaml", ["trainer.max_steps=2000"])
result = distmeta.train(cfg)
print(result.run_id, result.evaluation.values["mse.k10.steps1.mean"])  # acc.k1.steps10.mean for images
report = distmeta.evaluate(result.last_checkpoint)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distmeta import builders, checkpoints, config, jobs
from distmeta.config import DistMetaConfig
from distmeta.errors import UserError
from distmeta.evaluation import EvalReport, combine, plot_curves
from distmeta.evaluation import evaluate as run_protocol
from distmeta.models import family_view

log = logging.getLogger(__name__)

FIGURE_ARTIFACT_DIR = "eval"

# Lightning warnings that are expected here and not actionable for users: checkpoints hold
# post-step weights by design, and a resumed run writes into its own existing folder.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")


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
    from distmeta.learner.module import MetaLearner
    from distmeta.runtime import start_ray
    from distmeta.tracking import run as tracking_run
    from distmeta.tracking.store import check_reachable, resolve_uri

    uri = resolve_uri(cfg.tracking.uri)
    check_reachable(uri)
    if cfg.cluster.learner_device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "cluster.learner_device=cuda but this process sees no CUDA device; use cpu, or run the driver on a GPU node"
        )
    # every dataset is read and checked before the MLflow run or Ray exist: bad data costs nothing
    test_families = evaluation_families(cfg)
    train_units = builders.training_data(cfg)
    val_families = builders.validation_families(cfg)
    builders.model_spec(cfg)  # e.g. head names: refused here, before a run exists
    ckpt_path, run_id, resumed_at = None, None, None
    if resume:
        ckpt_path = checkpoints.find_resume(resume, cfg.checkpoint.dir)
        saved = checkpoints.read(ckpt_path)
        meta = saved["distmeta"]
        _check_resumable(cfg, config.from_yaml_text(meta["config_yaml"]), ckpt_path)
        checkpoints.resumable(saved, ckpt_path)
        run_id, resumed_at = meta["run_id"], int(saved.get("global_step", 0))
        if not cfg.tracking.uri:  # the run lives in the store it started in
            uri = meta["tracking_uri"]
            check_reachable(uri)

    logger = tracking_run.make_logger(uri, cfg.tracking.experiment, cfg.tracking.run_name, run_id)
    run_id = logger.run_id
    client = logger.experiment
    print(jobs.announce(run_id, logger.experiment_id, uri), flush=True)  # distmeta submit reads it from the job's log
    tracking_run.log_config(client, run_id, config.to_flat_dict(cfg), config.to_yaml(cfg), resumed_at)

    run_dir = Path(cfg.checkpoint.dir).resolve() / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    started_ray = start_ray(cfg.cluster.address) if cfg.cluster.num_shards > 0 else False
    group = None
    threads = torch.get_num_threads()
    if cfg.cluster.num_shards > 0:
        # The learner's own maths is tiny; idle intra-op threads would only compete with the shards.
        torch.set_num_threads(1)
    try:
        group = builders.shard_group(cfg, train_units)
        client.set_tag(run_id, "distmeta.batching", builders.batching(cfg, builders.shard_device(cfg)))  # what `auto` chose
        for k, info in enumerate(group.workers_info()):
            client.set_tag(run_id, f"shard.{k}.worker", f"{info['host']} pid {info['pid']} {info['device']}")
            for key in ("node", "gpus"):
                if info.get(key):
                    client.set_tag(run_id, f"shard.{k}.{key}", info[key])
        model = builders.model(cfg)
        metadata = {"run_id": run_id, "tracking_uri": uri, "config_yaml": config.to_yaml(cfg), "format": checkpoints.FORMAT}
        settings = builders.learner_settings(cfg)
        learner = MetaLearner(model, group, settings, val_families, metadata)
        trainer = lightning_trainer(cfg, logger, run_dir, settings.val_monitor)
        trainer.fit(learner, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        last = run_dir / checkpoints.LAST
        trainer.save_checkpoint(last, weights_only=False)  # full state: a later --resume continues from it
    except BaseException:
        _abort(cfg, logger, client, run_id, run_dir, uri)
        raise
    finally:
        torch.set_num_threads(threads)
        if group is not None:
            group.close()
        if started_ray:
            import ray

            ray.shutdown()

    best = run_dir / checkpoints.BEST
    best = best if best.is_file() else None
    try:
        report, figure = _evaluate_and_log(cfg, model, None, uri, run_dir, test_families)
    except BaseException:
        _abort(cfg, logger, client, run_id, run_dir, uri)
        raise
    _report_unsent(logger.close(cfg.tracking.flush_timeout_s, run_dir), uri)
    model_uri = ""

    def publish() -> None:
        nonlocal model_uri
        from distmeta.tracking.run import log_evaluation

        log_evaluation(uri, run_id, report.values, figure, FIGURE_ARTIFACT_DIR)
        tracking_run.log_checkpoints(client, run_id, {"last": last, **({"best": best} if best else {})})
        model_uri = tracking_run.log_model(uri, run_id, model)
        client.set_terminated(run_id, "FINISHED")

    _publish(uri, publish, f"the evaluation, checkpoints and model (the checkpoints are in {run_dir})")
    return TrainResult(run_id, uri, run_dir, last, best, report, figure, model, model_uri)


def _abort(cfg: DistMetaConfig, logger, client, run_id: str, run_dir: Path, uri: str) -> None:
    """No run is left RUNNING and no metric vanishes: the queue gets a short while to drain (the
    rest is saved beside the checkpoints), then the run is marked FAILED if the store answers."""
    _report_unsent(logger.close(min(cfg.tracking.flush_timeout_s, 10.0), run_dir), uri)
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
            uri,
            type(exc).__name__,
            " ".join(str(exc).split())[:300],
            what,
        )
        return False


def _report_unsent(path: Path | None, uri: str) -> None:
    if path is not None:
        log.warning(
            "metrics that MLflow at %s did not take before tracking.flush_timeout_s are saved in %s "
            "(JSON lines: key, value, timestamp, step)",
            uri,
            path,
        )


def evaluate(checkpoint: str | os.PathLike, overrides: Sequence[str] = (), log_to_mlflow: bool = True) -> tuple[EvalReport, Path]:
    """Run the meta-test protocol on a checkpoint's meta-parameters; ``overrides`` adjust its
    config (e.g. ``evaluation.num_tasks=1000``). Logs metrics and the figure to the checkpoint's
    MLflow run when ``log_to_mlflow`` and the store is reachable."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {checkpoint}")
    ckpt = checkpoints.read(path)
    meta = ckpt["distmeta"]
    cfg = config.from_yaml_text(meta["config_yaml"], overrides)
    model = builders.model(cfg)
    try:
        model.load_state_dict(checkpoints.model_state(ckpt))
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not match its own model config: {str(exc).splitlines()[0]}") from None
    run_id = meta["run_id"] if log_to_mlflow else None
    return _evaluate_and_log(cfg, model, run_id, meta["tracking_uri"], path.parent, evaluation_families(cfg))


def evaluation_plan(cfg: DistMetaConfig, family: str | None = None) -> tuple[list[int], list[int], int]:
    """``(shots, steps, query)`` of the protocol for ``family`` (a label; default the first), the
    config's empty/zero defaults resolved: regression evaluates K = 5, 10, 20 on 100 query points;
    an image family its own training shots on 15 query images per class; methods without an inner
    loop at step 0 only."""
    e, image = cfg.evaluation, builders.is_image(cfg)
    entry = next(x for x in builders.entries(cfg) if family in (None, x.label))
    shots = list(e.shots) or ([entry.shots] if image else [5, 10, 20])
    steps = list(e.steps) if builders.algorithm(cfg).adapts else [0]
    return shots, steps, e.query or (15 if image else 100)


def evaluation_families(cfg: DistMetaConfig):
    """The test split's families with their images, each checked against every K it is evaluated at."""
    families = builders.families_with_data(cfg, "test")
    for family in families:
        shots, _, query = evaluation_plan(cfg, family.name)
        for k in shots:
            builders.checked(family, f"test split, evaluation.shots={k}, evaluation.query={query}", shots=k, query=query)
    return families


def _evaluate_and_log(
    cfg: DistMetaConfig, model: nn.Module, run_id: str | None, uri: str, out_dir: Path, families
) -> tuple[EvalReport, Path]:
    """Each family's own protocol (its shots; with per-family heads its own head); a mixture's
    reports are combined into one table."""
    algo = builders.algorithm(cfg)
    reports = {}
    for f in families:
        shots, steps, query = evaluation_plan(cfg, f.name)
        reports[f.name] = run_protocol(
            algo,
            family_view(model, f.name),
            f,
            seed=cfg.evaluation.seed,
            num_tasks=cfg.evaluation.num_tasks,
            shots=shots,
            steps=steps,
            query=query,
        )
    report = combine(reports) if cfg.tasks.families else reports[families[0].name]
    figure = plot_curves(report, out_dir / FIGURE_ARTIFACT_DIR / "adaptation_curve.png")
    if run_id:
        from distmeta.tracking.run import log_evaluation
        from distmeta.tracking.store import check_reachable

        check_reachable(uri)
        log_evaluation(uri, run_id, report.values, figure, FIGURE_ARTIFACT_DIR)
    return report, figure


def lightning_trainer(cfg: DistMetaConfig, logger, run_dir: Path, monitor: tuple[str, str], extra_callbacks: Sequence = ()):
    """The Lightning ``Trainer`` a run of ``cfg`` trains with (checkpoints into ``run_dir``, the
    best one by ``monitor``); ``distmeta bench`` adds its clock as ``extra_callbacks``."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar

    tr = cfg.trainer
    callbacks = [
        ModelCheckpoint(
            dirpath=run_dir,
            filename="best",
            monitor=monitor[0],
            mode=monitor[1],
            save_top_k=1,
            enable_version_counter=False,
            auto_insert_metric_name=False,
        ),
        ModelCheckpoint(
            dirpath=run_dir,
            filename="last",
            every_n_train_steps=cfg.checkpoint.every_n_steps,
            save_top_k=1,
            enable_version_counter=False,
        ),
    ]
    callbacks.extend(extra_callbacks)
    if tr.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, min(100, tr.log_every_n_steps))))
    return pl.Trainer(
        accelerator="gpu" if cfg.cluster.learner_device == "cuda" else "cpu",
        devices=1,
        max_steps=tr.max_steps,
        logger=logger,
        callbacks=callbacks,
        val_check_interval=tr.val_every_n_steps,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        log_every_n_steps=1,
        enable_progress_bar=tr.progress_bar,
        enable_model_summary=False,
        inference_mode=False,  # validation adapts to tasks: it needs gradients
        default_root_dir=str(run_dir),
    )


def _check_resumable(cfg: DistMetaConfig, saved: DistMetaConfig, path: Path) -> None:
    """A run continues only with the model and task stream it started with."""
    for section in ("seed", "model", "tasks", "algorithm.name", "algorithm.meta_batch_size"):
        now, then = _get(cfg, section), _get(saved, section)
        if now != then:
            raise UserError(
                f"checkpoint {path} was written by a run with {section}={_show(then)}, this config has "
                f"{section}={_show(now)}; resume with the original config or start a new run"
            )


def _get(cfg, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _show(value) -> str:
    return str(dataclasses.asdict(value)) if dataclasses.is_dataclass(value) else str(value)
