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

from distmeta.bench.baseline import loop_step, rl_loop_step
from distmeta.evaluation.adaptation import sampled_curve
from distmeta.recipe import Recipe
from distmeta.tasks import TRAIN, VALIDATION


class LoopBaseline:
    """The baseline's training state: its own model (the same initial weights as distmeta's),
    Adam, and the step counter that indexes the task stream."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.model = recipe.model()
        settings = recipe.learner_settings
        self.opt = torch.optim.Adam(self.model.parameters(), lr=settings.meta_lr, foreach=True)
        units = recipe.training_units
        family = recipe.families("train")[0]
        self.family = family.with_data(units[0] if units else None)
        self.step = 0
        self.parts: dict[str, float] = {}  # seconds, summed over steps

    def train_step(self) -> None:
        algo, batch = self.recipe.algorithm, self.recipe.learner_settings.planner.meta_batch_size
        t0 = time.perf_counter()
        tasks = self.family.sample(self.recipe.seed, TRAIN, self.step, range(batch))
        t1 = time.perf_counter()
        if algo.collects:
            rl_loop_step(self.model, self.opt, tasks, algo)
        else:
            loop_step(self.model, self.opt, tasks, algo.loss, algo.inner.lr, algo.inner.steps, algo.inner.first_order)
        t2 = time.perf_counter()
        self.parts["sample"] = self.parts.get("sample", 0.0) + t1 - t0
        self.parts["meta_gradient_and_optimizer"] = self.parts.get("meta_gradient_and_optimizer", 0.0) + t2 - t1
        self.step += 1

    def validation_score(self) -> float:
        """The score distmeta's validation reports (``meta/val_mse`` or ``meta/val_acc``): the same held-out
        tasks, after the training number of inner steps."""
        settings = self.recipe.learner_settings
        curves = [
            sampled_curve(settings.algorithm, self.model, family, seed=self.recipe.seed, stream=VALIDATION,
                          num_tasks=settings.val_tasks, steps=(settings.train_inner_steps,))
            for family in self.recipe.validation_families
        ]  # fmt: skip
        return torch.stack([c.mean() for c in curves]).mean().item()


class DistmetaRun:
    """One ``distmeta train`` of a recipe without the evaluation and model logging around it: the
    shard group (in-process or Ray actors, in the recipe's runtime entered by the caller), the
    learner, a Lightning trainer writing checkpoints under ``workdir`` and metrics to ``uri``."""

    def __init__(self, name: str, recipe: Recipe, uri: str, workdir: Path, callbacks: Sequence = (), validate: bool = False):
        from distmeta.learner.module import MetaLearner
        from distmeta.tracking.run import make_logger

        self.name, self.recipe = name, recipe
        self.run_dir = workdir / name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.group = recipe.shard_group()
        try:
            val = recipe.validation_families if validate else ()
            self.learner = MetaLearner(recipe.model(), self.group, recipe.learner_settings, val, {"bench": name})
            self.logger = make_logger(uri, "distmeta-bench-runs", f"bench-{name}")
            self.trainer = recipe.trainer(self.logger, self.run_dir, callbacks)
        except BaseException:
            self.group.close()
            raise

    def fit(self) -> None:
        self.trainer.fit(self.learner)

    def close(self) -> None:
        self.group.close()
        self.logger.close(10.0, self.run_dir)
