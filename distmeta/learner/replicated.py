"""The learner's all-reduce mode (``cluster.aggregation: allreduce``): the shard actors reduce
their gradients and update replicas of the meta-parameters themselves; the learner counts the
steps, keeps the schedule and holds the replicas' state when it needs it."""

from __future__ import annotations

import logging
import time

from distmeta import interrupts
from distmeta.shard.aggregate import aggregate
from distmeta.shard.replica import ReplicaState, capture, restore

log = logging.getLogger(__name__)


class ReplicatedSteps:
    """Mixed into :class:`~distmeta.learner.module.MetaLearner`."""

    @property
    def replicated(self) -> bool:
        """All-reduce mode: the shard actors update replicas of the meta-parameters themselves."""
        return bool(getattr(self.group, "replicated", False))

    def _replicated_step(self, step: int) -> None:
        """All-reduce mode: the replicas compute, reduce and step; the learner counts the step,
        advances the schedule, and loads the replicas' state when a validation, a checkpoint or
        the end follows (also when a stop was asked: the checkpoint written then holds this step)."""
        if interrupts.requested():  # asked between steps: no new one; the checkpoint written next holds this one
            self._sync(step)
            self.trainer.should_stop = True
            return
        s, opt = self.settings, self.optimizers()
        started = time.perf_counter()
        sync = s.syncs(step)
        done = self.group.step(step, s.planner.plan(step), opt.param_groups[0]["lr"], s.logged(step), sync)
        collected = time.perf_counter()
        if done.state is not None:
            self._load(done.state, step + 1)
        elif interrupts.requested():
            self._sync(step + 1)
        self._optimizer_step(opt)  # no gradients: it moves nothing, but counts the step and steps the schedule
        if done.skipped:  # as in learner mode: the step is spent, nothing of it is logged
            self._skipped_steps += 1
            log.warning("trainer.on_nonfinite=skip: step %d makes no update (%d skipped so far)", step, self._skipped_steps)
            return
        agg = aggregate(done.results, step=step, version=step, combined=done.combined)
        self._close_step(step, agg, done.results, collected - started, done.reduce_seconds, done.apply_seconds)

    def _state(self) -> ReplicaState:
        """The learner's meta-parameters, buffers and optimizer state, as a replica holds them."""
        return capture(self.model, self.optimizers().optimizer, self.global_step)

    def _sync(self, steps: int) -> None:
        """Hold the replicas' state after ``steps`` meta-steps (read from rank 0 unless held already)."""
        if self._synced != steps:
            self._load(self.group.state(), steps)

    def _load(self, state: ReplicaState, steps: int) -> None:
        """Become the replicas' ``state`` (after ``steps`` meta-steps), keeping the learner's own
        learning rates and schedule."""
        if state.steps != steps:
            raise RuntimeError(f"the replicas' state is after {state.steps} meta-steps, the learner expected {steps}")
        restore(self.model, self.optimizers().optimizer, state)
        self._synced = steps
