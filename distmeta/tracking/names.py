"""Metric names, defined once. Prefixes: ``meta/`` (training objective), ``val/`` (held-out tasks
during training), ``eval/`` (the meta-test protocol), ``shard/<k>/``, ``family/<name>/``,
``throughput/``, ``time/``, ``fault/`` (the evaluation's own keys live in :mod:`distmeta.evaluation.keys`)."""

META_LOSS = "meta/loss"
"""The objective the meta-gradient differentiates, per task (Reptile: its query loss after adaptation)."""
META_LR = "meta/lr"
META_GRAD_NORM = "meta/grad_norm"
THROUGHPUT_TASKS_PER_S = "throughput/tasks_per_s"
THROUGHPUT_STEPS_PER_S = "throughput/steps_per_s"
FAULT_RECOMPUTED_TASKS = "fault/recomputed_tasks"
FAULT_FAILED_ATTEMPTS = "fault/failed_attempts"
FAULT_ACTOR_RESTARTS = "fault/actor_restarts"
FAULT_LOST_ACTORS = "fault/lost_actors"
FAULT_REPLICA_RESYNCS = "fault/replica_resyncs"
FAULT_SKIPPED_STEPS = "fault/skipped_steps"
WIRE_SENT_MB = "wire/sent_mb_per_step"
WIRE_RECEIVED_MB = "wire/received_mb_per_step"
"""The learner's payload through its shard group (weights, gradients, replica states), MB per
meta-step, window mean: (shards + 1) x the weights in learner mode, nothing on an all-reduce
mode's ordinary step."""


def meta_metric(key: str) -> str:
    """``meta/query_loss``, ``meta/preadapt_acc``, ...: per-task means of the algorithms' metrics."""
    return f"meta/{key}"


def val_score(score: str) -> str:
    """``val/acc`` or ``val/mse``: the validation score after the training number of inner steps;
    the best checkpoint monitors it (max for accuracy, min for MSE)."""
    return f"val/{score}"


def val_score_after(score: str, steps: int) -> str:
    return f"val/{score}_step{steps}"


def shard_seconds(k: int) -> str:
    return f"shard/{k}/seconds"


def shard_tasks_per_s(k: int) -> str:
    return f"shard/{k}/tasks_per_s"


STEP_PARTS = ("sample", "meta_gradient", "shard_wait", "aggregation", "optimizer", "logging")
"""Where a meta-step's time goes, as the learner measures it: on the slowest shard, building the
tasks (``sample``) and their meta-gradient; in the driver, blocked on the shards (``shard_wait``:
with synchronous shards the round trip plus their compute, pipelined only what the overlap did
not hide), ``aggregation``, ``optimizer`` (Adam, clipping, schedule) and ``logging`` (the window
bookkeeping; MLflow itself is sent from a background thread)."""


def step_time_ms(part: str) -> str:
    """``time/<part>_ms``: milliseconds per meta-step spent in one of :data:`STEP_PARTS`, window mean."""
    return f"time/{part}_ms"


def family_metric(family: str, name: str) -> str:
    """``family/<name>/query_loss``, ``.../tasks_seen``, ``.../grad_share``, ``.../val_mse``."""
    return f"family/{family}/{name}"
