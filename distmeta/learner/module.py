"""``MetaLearner``: the Lightning module that owns the meta-parameters and the meta-optimizer.

Each training step broadcasts the weights to the shard group, gathers the shards' summed
meta-gradients, averages them over tasks, and steps Adam (manual optimization). Lightning provides
the loop, checkpointing, validation, gradient clipping, LR scheduling and the progress bar.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from distmeta import interrupts
from distmeta.errors import NonFiniteGradientError
from distmeta.learner.data import train_loader, val_loader
from distmeta.learner.replicated import ReplicatedSteps
from distmeta.learner.settings import LearnerSettings
from distmeta.learner.validation import validation_scores
from distmeta.learner.window import Window, fault_totals, summed_times
from distmeta.models import update_running
from distmeta.shard import wire
from distmeta.shard.aggregate import aggregate
from distmeta.shard.group import InFlight, ShardGroup
from distmeta.shard.replica import capture, restore
from distmeta.tasks import TaskFamily
from distmeta.tracking import names
from distmeta.tracking.system import SystemMetrics

log = logging.getLogger(__name__)


class MetaLearner(ReplicatedSteps, pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        group: ShardGroup,
        settings: LearnerSettings,
        val_families: tuple[TaskFamily, ...],
        metadata: dict[str, Any],
    ):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.group = group
        self.settings = settings
        self.val_families = val_families  # with the validation splits' images; tasks are sampled per validation
        self._tasks_seen: dict[str, int] = {}
        self._skipped_steps = 0
        self.metadata = metadata  # travels in every checkpoint (MLflow run id, resolved config)
        self._window = Window(mixture=settings.mixture, env_steps=settings.env_steps_per_task)
        self._system = SystemMetrics(settings.system_metrics_s)
        self._clock: float | None = None  # perf_counter at the start of the first step since fit began
        self._faulted: set[str] = set()  # the fault series logged (each from its first non-zero window on)
        # pipelined: how the next step is asked (step, weights version, weights), and its call once
        # submitted (not after the last step; a checkpoint keeps the ask, so a resume asks the same)
        self._next_ask: dict[str, Any] | None = None
        self._next: InFlight | None = None
        self.time_totals: dict[str, float] = {}  # seconds per names.STEP_PARTS since start (read by distmeta bench)
        self._synced = 0  # all-reduce mode: the meta-steps after which the learner's state is the replicas'

    # -- optimization -------------------------------------------------------------------------
    def configure_optimizers(self):
        s = self.settings
        # fused: one kernel for the whole update, faster than foreach on CPU (docs/performance.md); with Ray
        # shards the driver runs 1 torch thread (distmeta.runtime.session): its OpenMP team leaves the actors the cores.
        opt = torch.optim.Adam(self.model.parameters(), lr=s.meta_lr, fused=True)
        if s.lr_schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.max_steps, eta_min=s.meta_lr * s.min_lr_ratio)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self):
        return train_loader()

    def val_dataloader(self):
        return val_loader()

    def on_train_start(self) -> None:
        interrupts.install()  # Lightning's SIGTERM handler would end fit with an exception mid-loop
        if self.replicated:  # the replicas start from the learner's state: a fresh one or a checkpoint's
            self.group.load_state(self._state())
            self._synced = self.global_step
        if self.global_step == 0 and self.logger is not None and self.val_families:  # the curves start at step 0
            scores = validation_scores(self.settings, self.model, self.val_families, 0, strict=False)
            self.logger.log_metrics(scores, step=0)
        self._clock = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if interrupts.requested():  # a stop asked during the step: the loop ends at this boundary
            self.trainer.should_stop = True

    def training_step(self, batch, batch_idx):
        if self.replicated:
            return self._replicated_step(self.global_step)
        step = self.global_step  # the meta-step; restored on resume, so the task stream continues
        params = dict(self.model.named_parameters())
        weights = wire.weights_out(params)
        s, opt = self.settings, self.optimizers()
        epochs = s.algorithm.outer_epochs  # ProMP: several updates on the step's tasks, collected once
        # several epochs: a stop or a skipped epoch mid-step goes back to the step's start
        start = capture(self.model, opt.optimizer, step) if epochs > 1 else None
        times, rounds = dict.fromkeys(("shard_wait", "aggregation", "optimizer"), 0.0), []
        for epoch in range(epochs):
            started = time.perf_counter()
            try:
                interrupts.check()  # asked during validation: no new step
                at = wire.weights_out(params) if epoch else weights
                later = {"epoch": epoch, "origin": weights} if epoch else {}  # origin: where the step's data was collected
                call = (self._take_submitted(step) if epoch == 0 else None) or self.group.submit(
                    step, at, step, s.planner.plan(step), s.logged(step) and epoch == epochs - 1, **later
                )
                results = self.group.collect(call)
            except interrupts.Interrupted:  # the step in flight is abandoned; nothing of it stays applied
                self._back_to(start)
                self.trainer.should_stop = True
                return
            if s.staleness:  # the shards start on the next step now, at the weights before this update
                self._next_ask = {"step": step + 1, "version": step, "weights": weights}
                self._next = self._submit_next() if step + 1 < s.max_steps else None
            collected = time.perf_counter()  # shard_wait: submitting and waiting for results
            try:
                agg = aggregate(
                    results, step=step, version=call.version, weighting=s.family_weighting, loss_weights=dict(s.loss_weights)
                )
            except NonFiniteGradientError as exc:
                self._back_to(start)
                return self._skip(exc, step, params, opt)
            if call.version != step and s.delay_compensation > 0:  # DC-ASGD: towards the current weights
                agg.grad = agg.grad + s.delay_compensation * agg.grad * agg.grad * (weights - call.weights)
            aggregated = time.perf_counter()
            self._update(agg, params, opt, last=epoch == epochs - 1)
            for part, seconds in zip(times, (collected - started, aggregated - collected, time.perf_counter() - aggregated)):
                times[part] += seconds
            rounds.append(results)
        self._close_step(step, agg, summed_times(rounds), *times.values())

    def _update(self, agg, params, opt, last: bool) -> None:
        """Step the meta-optimizer on ``agg``'s gradient; only a meta-step's ``last`` update is
        counted as the step (earlier epochs step the plain optimizer: the schedule and Lightning's
        step counter move once per meta-step)."""
        grads = wire.grads_in(agg.grad, params)
        for name, p in params.items():
            p.grad = grads[name]
        if self.settings.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.settings.grad_clip, gradient_clip_algorithm="norm")
        if not last:
            opt.optimizer.step()
            return
        self._optimizer_step(opt)
        if agg.norm_stats is not None:  # the norms' estimates move by the statistics of this step's tasks
            update_running(self.model, agg.norm_stats)

    def _skip(self, exc: NonFiniteGradientError, step: int, params, opt) -> None:
        """A non-finite meta-gradient: ``trainer.on_nonfinite=stop`` raises; ``skip`` makes no
        update, but the step is spent: an optimizer step with no gradients moves nothing (Adam
        skips parameters without .grad) and advances the step counter and schedule."""
        if self.settings.on_nonfinite == "stop":
            raise exc
        self._skipped_steps += 1
        log.warning("%s; trainer.on_nonfinite=skip: step %d makes no update (%d skipped so far)", exc, step, self._skipped_steps)
        for p in params.values():
            p.grad = None
        self._optimizer_step(opt)

    def _back_to(self, start) -> None:
        """Undo the epochs of a meta-step applied so far (several epochs; else nothing was applied)."""
        if start is not None:
            restore(self.model, self.optimizers().optimizer, start)

    def _close_step(self, step, agg, results, waited: float, aggregation: float, optimizer: float) -> None:
        """Time the step's parts (the shards' on the slowest shard) and record it; the logging's
        own cost (a logged window's lands in the next) is timed too."""
        self._time("sample", max(r.sample_seconds for r in results))
        self._time("meta_gradient", max(r.seconds - r.sample_seconds for r in results))
        for part, seconds in (("shard_wait", waited), ("aggregation", aggregation), ("optimizer", optimizer)):
            self._time(part, seconds)
        recorded = time.perf_counter()
        self._record(step, agg, results)
        self._time("logging", time.perf_counter() - recorded)

    def _time(self, part: str, seconds: float) -> None:
        self._window.add_time(part, seconds)
        self.time_totals[part] = self.time_totals.get(part, 0.0) + seconds

    def _submit_next(self) -> InFlight:
        ask = self._next_ask
        step = ask["step"]
        return self.group.submit(
            step, ask["weights"], ask["version"], self.settings.planner.plan(step), self.settings.logged(step)
        )

    def _take_submitted(self, step: int) -> InFlight | None:
        """Pipelined: the call for ``step`` made during the previous step, or after a resume the
        same call again (the checkpoint kept how it was asked); None when synchronous."""
        call, self._next = self._next, None
        if call is None and self._next_ask is not None:
            if self._next_ask["step"] != step:
                raise RuntimeError(f"pipelined call for step {self._next_ask['step']} found at step {step}")
            call = self._submit_next()
        return call

    def _optimizer_step(self, opt) -> None:
        """The optimizer step (Lightning counts it as the meta-step) and the schedule's."""
        opt.step()
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()

    def _record(self, step, agg, results) -> None:
        w = self._window
        w.add_step(agg, results)
        for f, n in agg.family_counts.items():
            self._tasks_seen[f] = self._tasks_seen.get(f, 0) + n
        first_ms = None
        if self._clock is not None:  # the first step since the start (compiling): timed apart
            first_ms, self._clock = 1000 * (time.perf_counter() - self._clock), None
            w.restart_clock()
        if not self.settings.logged(step) and first_ms is None:
            return
        logged = {names.FIRST_STEP_MS: first_ms} if first_ms is not None else {}
        if self.settings.logged(step):
            traffic = (self.group.traffic.sent, self.group.traffic.received)
            logged.update(w.means(traffic))
            if self.settings.mixture:
                logged.update({names.family_metric(f, "tasks_seen"): float(n) for f, n in self._tasks_seen.items()})
            if self.settings.lr_schedule != "constant":
                logged[names.META_LR] = self.optimizers().param_groups[0]["lr"]
            faults = self.fault_totals()
            self._faulted.update(k for k, v in faults.items() if v)
            logged.update({k: faults[k] for k in self._faulted})  # a series from its first fault on
            logged.update(self._system.sample(w.shard_system) if self._system.due() else {})
            self._window = Window(traffic_from=traffic, mixture=self.settings.mixture, env_steps=self.settings.env_steps_per_task)
        # Straight to the logger: Lightning's self.log would re-send on_step values at every later step.
        if self.logger is not None:
            self.logger.log_metrics(logged, step=step + 1)
        if names.META_LOSS in logged:
            self.log("loss", logged[names.META_LOSS], prog_bar=True, logger=False, batch_size=1)

    def fault_totals(self) -> dict[str, float]:
        """Each of :data:`names.FAULTS` so far (replica resyncs in all-reduce mode only)."""
        return fault_totals(self.group.faults, self._skipped_steps, self.replicated)

    # -- validation ---------------------------------------------------------------------------
    def on_validation_start(self) -> None:
        if self.replicated:  # validation scores the replicas' weights of this step (held already on a sync step)
            self._sync(self.global_step)

    def validation_step(self, batch, batch_idx):
        logged = validation_scores(self.settings, self.model, self.val_families, self.global_step)
        monitor, _ = self.settings.val_monitor
        # self.log feeds ModelCheckpoint's monitor; the logger gets the values at the meta-step
        # count, the same step axis as the training metrics (Lightning's own index is one behind).
        self.log_dict(logged, on_step=False, on_epoch=True, batch_size=1, logger=False)
        if self.logger is not None:
            self.logger.log_metrics(logged, step=self.global_step)
        self.log(f"val_{self.settings.algorithm.score_name}", logged[monitor], prog_bar=True, logger=False, batch_size=1)

    # -- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the file exists only once the metrics up to its step are in MLflow: a driver killed after
        # it loses none of them (the resumed run logs from the step after it)
        if not getattr(self.logger, "flush", lambda: True)():
            log.warning("checkpoint at step %d: MLflow has not taken the metrics before it yet; saving anyway", self.global_step)
        if self.replicated and self._synced != self.global_step:  # a save off the sync cadence: the replicas' state
            self._sync(self.global_step)
            checkpoint["state_dict"] = self.state_dict()
            checkpoint["optimizer_states"] = [self.optimizers().optimizer.state_dict()]
        checkpoint["distmeta"] = dict(self.metadata)
        if self._next_ask is not None:  # a resumed pipelined run asks for the same next step, at the same weights
            checkpoint["distmeta_next"] = dict(self._next_ask)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._next = None
        self._next_ask = checkpoint.get("distmeta_next") if self.settings.staleness else None
