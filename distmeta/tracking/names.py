"""Metric names, defined once. Prefixes: ``meta/`` (the learning curves: training objective and
validation score), ``optim/`` (the optimizer's gradient norm and scheduled LR), ``test/`` (the
meta-test protocol's adaptation curves, :mod:`distmeta.evaluation.keys`), ``shard/<k>/``,
``family/<name>/`` (mixtures only), ``throughput/``, ``time/``, ``wire/``, ``fault/`` (only once
a fault happened), ``system/`` (MLflow's System metrics tab: the learner's machine, and
``system/shard_<k>/`` each shard's process).

MLflow's chart view groups a run's metrics by prefix and sorts the groups by name, so the names
are chosen for that order: ``fault/`` (when there is one) and ``family/`` (a mixture's families)
come before ``meta/``, whose training and validation curves then open the page; one time unit
(milliseconds) throughout."""

META_LOSS = "meta/loss"
"""The objective the meta-gradient differentiates, per task: the query loss after adaptation
(the algorithms' ``query_loss`` is this, so it is not logged a second time)."""
META_LR = "optim/lr"
"""Logged only when the schedule moves it (a constant LR is a param)."""
META_GRAD_NORM = "optim/grad_norm"
THROUGHPUT_TASKS_PER_S = "throughput/tasks_per_s"
THROUGHPUT_ENV_STEPS_PER_S = "throughput/env_steps_per_s"
"""Meta-RL runs count in environment steps (every task takes the same number) in place of tasks."""
FIRST_STEP_MS = "time/first_step_ms"
"""The first meta-step after a start or resume (tracing and compiling on every actor), once; the
``time/*`` window means and ``throughput/`` leave it out."""
FAULT_RECOMPUTED_TASKS = "fault/recomputed_tasks"
FAULT_FAILED_ATTEMPTS = "fault/failed_attempts"
FAULT_ACTOR_RESTARTS = "fault/actor_restarts"
FAULT_LOST_ACTORS = "fault/lost_actors"
FAULT_REPLICA_RESYNCS = "fault/replica_resyncs"
FAULT_SKIPPED_STEPS = "fault/skipped_steps"
FAULTS = (FAULT_RECOMPUTED_TASKS, FAULT_FAILED_ATTEMPTS, FAULT_ACTOR_RESTARTS, FAULT_LOST_ACTORS, FAULT_REPLICA_RESYNCS,
          FAULT_SKIPPED_STEPS)  # fmt: skip
"""Each is logged from the first window it is non-zero in (a fault-free run has none of these
series); the run's totals are tags ``distmeta.fault.<name>``."""
WIRE_MB = "wire/mb_per_step"
"""The learner's payload through its shard group (weights out, gradients or replica states
back), MB per meta-step, window mean: (shards + 1) x the weights in learner mode, nothing on an
all-reduce mode's ordinary step. One series for both directions: with one family the two are
equal in learner mode."""


def meta_metric(key: str) -> str:
    """``meta/query_loss``, ``meta/preadapt_acc``, ...: per-task means of the algorithms' metrics."""
    return f"meta/{key}"


def val_score(score: str) -> str:
    """``meta/val_acc`` or ``meta/val_mse``: the validation score after the training number of
    inner steps, beside the training loss; the best checkpoint monitors it (max for accuracy, min
    for MSE); first logged at step 0."""
    return f"meta/val_{score}"


def val_score_after(score: str, steps: int) -> str:
    """The validation score after another number of inner steps than training's (that one is
    :func:`val_score`)."""
    return f"meta/val_{score}_step{steps}"


def shard_compute_ms(k: int) -> str:
    """Milliseconds per meta-step shard ``k`` spent sampling and computing, window mean."""
    return f"shard/{k}/compute_ms"


def shard_tasks_per_s(k: int) -> str:
    return f"shard/{k}/tasks_per_s"


def shard_env_steps_per_s(k: int) -> str:
    return f"shard/{k}/env_steps_per_s"


STEP_PARTS = ("sample", "meta_gradient", "shard_wait", "aggregation", "optimizer", "logging")
"""Where a meta-step's time goes, as the learner measures it: on the slowest shard, building the
tasks (``sample``) and their meta-gradient; in the driver, blocked on the shards (``shard_wait``:
with synchronous shards the round trip plus their compute, pipelined only what the overlap did
not hide), ``aggregation``, ``optimizer`` (Adam, clipping, schedule) and ``logging`` (the window
bookkeeping; MLflow itself is sent from a background thread)."""


SYSTEM = "system/"
"""MLflow's prefix for system metrics (its UI shows them in their own tab): the learner's machine
as MLflow's monitors name it (``system/cpu_utilization_percentage``, ...)."""


def shard_system(k: int, key: str) -> str:
    """``system/shard_<k>/rss_megabytes``, ...: shard ``k``'s process, as it reported it (MLflow's
    own per-node form, ``system/<node>/<metric>``, with the shard as the node)."""
    return f"{SYSTEM}shard_{k}/{key}"


def step_time_ms(part: str) -> str:
    """``time/<part>_ms``: milliseconds per meta-step spent in one of :data:`STEP_PARTS`, window mean."""
    return f"time/{part}_ms"


def family_metric(family: str, name: str) -> str:
    """``family/<name>/loss``, ``.../tasks_seen``, ``.../grad_share``, ``.../val_mse``: a mixture's
    families (a single family's would copy ``meta/``)."""
    return f"family/{family}/{name}"


def fault_tag(key: str) -> str:
    """``distmeta.fault.actor_restarts``: the run's total of the fault metric ``key``."""
    return "distmeta.fault." + key.split("/", 1)[1]
