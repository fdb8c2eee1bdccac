"""``MetaLearner``: the Lightning module that owns the meta-parameters and the meta-optimizer.

Each training step broadcasts the weights to the shard group, gathers the shards' summed
meta-gradients, averages them over tasks, and steps Adam (manual optimization). Lightning provides
the loop, checkpointing, validation, gradient clipping, LR scheduling and the progress bar.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from distmeta.algorithms import Algorithm
from distmeta.evaluation.adaptation import sampled_curve
from distmeta.learner.aggregate import aggregate
from distmeta.learner.data import train_loader, val_loader
from distmeta.models import flatten, unflatten
from distmeta.shard.group import ShardGroup
from distmeta.tasks import VALIDATION, Family
from distmeta.tracking import names


@dataclass(frozen=True)
class LearnerSettings:
    """Plain settings of the learner (built from the config by :mod:`distmeta.builders`)."""

    plan: tuple[tuple[int, ...], ...]
    meta_lr: float
    lr_schedule: str
    min_lr_ratio: float
    max_steps: int
    grad_clip: float
    log_every_n_steps: int
    algorithm: Algorithm
    train_inner_steps: int
    val_steps: tuple[int, ...]
    seed: int = 0
    val_tasks: int = 200

    @property
    def val_monitor(self) -> tuple[str, str]:
        """The metric the best checkpoint follows, and whether lower (``min``) or higher is better."""
        score = self.algorithm.score_name
        return names.val_score(score), ("min" if score == "mse" else "max")


@dataclass
class _Window:
    """Sums over the steps since the last log, so each logged point is a window mean."""

    steps: int = 0
    tasks: int = 0
    started: float = field(default_factory=time.perf_counter)
    metrics: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.metrics[key] = self.metrics.get(key, 0.0) + value


class MetaLearner(pl.LightningModule):
    def __init__(self, model: nn.Module, group: ShardGroup, settings: LearnerSettings, val_family: Family, metadata: dict[str, Any]):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.group = group
        self.settings = settings
        self.val_family = val_family  # with the validation split's images; tasks are sampled per validation
        self.metadata = metadata  # travels in every checkpoint (MLflow run id, resolved config)
        self._names = [k for k, _ in model.named_parameters()]
        self._window = _Window()

    # -- optimization -------------------------------------------------------------------------
    def configure_optimizers(self):
        s = self.settings
        # foreach: one multi-tensor kernel per op. (fused=True parallelises with OpenMP on CPU: 4x
        # slower here, fighting the shard actors for the cores.)
        opt = torch.optim.Adam(self.model.parameters(), lr=s.meta_lr, foreach=True)
        if s.lr_schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.max_steps, eta_min=s.meta_lr * s.min_lr_ratio)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self):
        return train_loader()

    def val_dataloader(self):
        return val_loader()

    def training_step(self, batch, batch_idx):
        step = self.global_step  # the meta-step; restored on resume, so the task stream continues
        params = dict(self.model.named_parameters())
        weights = flatten({k: p.detach() for k, p in params.items()}).cpu()
        results = self.group.compute(step, weights, step, self.settings.plan)
        agg = aggregate(results, step=step, version=step)

        grads = unflatten(agg.grad.to(self.device), params)
        for name, p in params.items():
            p.grad = grads[name]
        opt = self.optimizers()
        if self.settings.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.settings.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        self._record(step, agg, results)

    def _record(self, step, agg, results) -> None:
        w = self._window
        w.steps += 1
        w.tasks += agg.task_count
        for key, value in agg.metrics.items():
            w.add(names.meta_metric(key), value)
        w.add(names.META_GRAD_NORM, agg.grad.norm().item())
        for r in results:
            w.add(names.shard_seconds(r.shard), r.seconds)
        done = step + 1
        if done % self.settings.log_every_n_steps and done != self.settings.max_steps:
            return
        elapsed = max(time.perf_counter() - w.started, 1e-9)
        logged = {k: v / w.steps for k, v in w.metrics.items()}
        logged[names.THROUGHPUT_TASKS_PER_S] = w.tasks / elapsed
        logged[names.THROUGHPUT_STEPS_PER_S] = w.steps / elapsed
        logged[names.META_LR] = self.optimizers().param_groups[0]["lr"]
        logged[names.FAULT_RECOMPUTED_TASKS] = float(self.group.faults.recomputed_tasks)
        logged[names.FAULT_FAILED_ATTEMPTS] = float(self.group.faults.failed_attempts)
        # Straight to the logger: Lightning's self.log would re-send on_step values at every later step.
        if self.logger is not None:
            self.logger.log_metrics(logged, step=done)
        self.log("loss", logged[names.META_LOSS], prog_bar=True, logger=False, batch_size=1)
        self._window = _Window()

    # -- validation ---------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        s = self.settings
        score = s.algorithm.score_name
        curve = sampled_curve(s.algorithm, self.model, self.val_family, seed=s.seed, stream=VALIDATION,
                              num_tasks=s.val_tasks, steps=s.val_steps)
        mean = curve.mean(dim=0)
        logged = {names.val_score_after(score, k): mean[i].item() for i, k in enumerate(s.val_steps)}
        monitor, _ = s.val_monitor
        logged[monitor] = logged[names.val_score_after(score, s.train_inner_steps)]
        if not all(math.isfinite(v) for v in logged.values()):
            raise FloatingPointError(f"non-finite validation {score} at step {self.global_step}: {logged}")
        # self.log feeds ModelCheckpoint's monitor; the logger gets the values at the meta-step
        # count, the same step axis as the training metrics (Lightning's own index is one behind).
        self.log_dict(logged, on_step=False, on_epoch=True, batch_size=1, logger=False)
        if self.logger is not None:
            self.logger.log_metrics(logged, step=self.global_step)
        self.log(f"val_{score}", logged[monitor], prog_bar=True, logger=False, batch_size=1)

    # -- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["distmeta"] = dict(self.metadata)

    def parameters_vector(self) -> torch.Tensor:
        return flatten({k: p.detach() for k, p in self.model.named_parameters()})
