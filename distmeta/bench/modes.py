"""What ``distmeta bench`` races: the per-task loop baseline, and distmeta's real training path.

- :class:`LoopBaseline`: how the reference libraries train (learn2learn's ``clone()/adapt()``,
  higher's ``innerloop_ctx``): for each task of the meta-batch, adapt a copy of the weights with
  ``torch.autograd.grad(create_graph=True)``, add its query loss, then one backward and one Adam
  step. Written here, on the same model, tasks and hyper-parameters (``tests/bench`` checks its
  meta-gradient equals distmeta's).
- :class:`DistmetaRun`: what ``distmeta train`` runs: the shard group, the ``MetaLearner`` in
  Lightning's ``Trainer`` (checkpoint callbacks, manual optimization), metrics through the
  asynchronous MLflow logger. Nothing is re-implemented, so the bench measures what users get.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from distmeta import builders
from distmeta.bench.baseline import loop_step
from distmeta.config import DistMetaConfig
from distmeta.evaluation.adaptation import sampled_curve
from distmeta.tasks import TRAIN, VALIDATION


class LoopBaseline:
    """The baseline's training state: its own model (the same initial weights as distmeta's),
    Adam, and the step counter that indexes the task stream."""

    def __init__(self, cfg: DistMetaConfig):
        self.cfg = cfg
        self.model = builders.model(cfg)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.algorithm.meta_lr, foreach=True)
        fam, data = builders.family(cfg, "train"), builders.data(cfg, "train")
        self.family = fam if data is None else fam.with_data(data)
        self.loss = "cross_entropy" if builders.is_image(cfg) else "mse"
        self.step = 0
        self.parts: dict[str, float] = {}  # seconds, summed over steps

    def train_step(self) -> None:
        a = self.cfg.algorithm
        t0 = time.perf_counter()
        tasks = self.family.sample(self.cfg.seed, TRAIN, self.step, range(a.meta_batch_size))
        t1 = time.perf_counter()
        loop_step(self.model, self.opt, tasks, self.loss, a.inner_lr, a.inner_steps, a.first_order)
        t2 = time.perf_counter()
        self.parts["sample"] = self.parts.get("sample", 0.0) + t1 - t0
        self.parts["meta_gradient_and_optimizer"] = self.parts.get("meta_gradient_and_optimizer", 0.0) + t2 - t1
        self.step += 1

    def validation_score(self) -> float:
        """The score distmeta's validation reports (``val/mse`` or ``val/acc``): the same held-out
        tasks, after the training number of inner steps."""
        settings = builders.learner_settings(self.cfg)
        curves = [
            sampled_curve(
                settings.algorithm,
                self.model,
                family,
                seed=self.cfg.seed,
                stream=VALIDATION,
                num_tasks=settings.val_tasks,
                steps=(settings.train_inner_steps,),
            )
            for family in builders.validation_families(self.cfg)
        ]
        return torch.stack([c.mean() for c in curves]).mean().item()


class DistmetaRun:
    """One ``distmeta train`` of ``cfg`` without the evaluation and model logging around it: the
    shard group (in-process or Ray actors, Ray already started by the caller), the learner, a
    Lightning trainer writing checkpoints under ``workdir`` and metrics to ``uri``."""

    def __init__(self, name: str, cfg: DistMetaConfig, uri: str, workdir: Path, callbacks: Sequence = (), validate: bool = False):
        from distmeta.api import lightning_trainer
        from distmeta.learner.module import MetaLearner
        from distmeta.tracking.run import make_logger

        self.name, self.cfg = name, cfg
        self.run_dir = workdir / name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.group = builders.shard_group(cfg, builders.training_data(cfg))
        try:
            settings = builders.learner_settings(cfg)
            val = builders.validation_families(cfg) if validate else ()
            self.learner = MetaLearner(builders.model(cfg), self.group, settings, val, {"bench": name})
            self.logger = make_logger(uri, "distmeta-bench-runs", f"bench-{name}")
            self.trainer = lightning_trainer(cfg, self.logger, self.run_dir, settings.val_monitor, callbacks)
        except BaseException:
            self.group.close()
            raise

    def fit(self) -> None:
        self.trainer.fit(self.learner)

    def close(self) -> None:
        self.group.close()
        self.logger.close(10.0, self.run_dir)
