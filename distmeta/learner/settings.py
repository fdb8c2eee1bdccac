"""The learner's plain settings (no Lightning): what the recipe builds and the MetaLearner reads."""

from __future__ import annotations

from dataclasses import dataclass

from distmeta.algorithms import Algorithm
from distmeta.tasks.sharding import Planner
from distmeta.tracking import names

LR_SCHEDULES = ("constant", "cosine")
ON_NONFINITE = ("stop", "skip")
STALENESS = (0, 1)
LEARNER_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class LearnerSettings:
    """Plain settings of the learner (built from the config by :class:`distmeta.recipe.Recipe`)."""

    planner: Planner
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
    family_weighting: str = "count"
    loss_weights: tuple[tuple[str, float], ...] = ()
    on_nonfinite: str = "stop"
    """``stop``: a NaN/inf meta-gradient ends the run (the last good checkpoint stays); ``skip``:
    the step makes no update and is counted (``fault/skipped_steps``)."""
    staleness: int = 0
    """1: pipelined, the shards compute step s+1 at step s's weights while step s is applied."""
    delay_compensation: float = 0.0
    """DC-ASGD's lambda for one-update-old gradients (``trainer.delay_compensation``)."""
    mixture: bool = False
    """Several task families: their own ``family/<name>/`` series are logged."""
    system_metrics_s: float = 10.0
    """Log the learner's machine and each shard's process (``system/``) at most this often; 0: never."""
    env_steps_per_task: int = 0
    """Meta-RL: the environment steps one training task takes (its collections x horizon); the
    throughput is then logged in environment steps per second. 0: supervised tasks."""
    sync_every: tuple[int, ...] = ()
    """All-reduce mode: the cadences (validation, checkpoints) at which the learner needs the
    replicas' weights; the last step always syncs."""

    @property
    def val_monitor(self) -> tuple[str, str]:
        """The metric the best checkpoint follows, and whether higher (``max``) or lower is better."""
        return names.val_score(self.algorithm.score_name), ("max" if self.algorithm.higher_is_better else "min")

    def syncs(self, step: int) -> bool:
        """Whether the learner needs the replicas' state after ``step`` (all-reduce mode): a
        validation or a checkpoint follows it, or it is the last."""
        done = step + 1
        return done == self.max_steps or any(n > 0 and done % n == 0 for n in self.sync_every)

    def logged(self, step: int) -> bool:
        """Whether ``step`` ends a logging window: only then do shards measure the metrics that
        cost compute of their own (the window's mean of those is this step's)."""
        done = step + 1
        return done % self.log_every_n_steps == 0 or done == self.max_steps
