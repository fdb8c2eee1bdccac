"""Metric names, defined once. Prefixes: ``meta/`` (training objective), ``val/`` (held-out tasks
during training), ``eval/`` (the meta-test protocol), ``shard/<k>/``, ``family/<name>/``,
``throughput/``, ``fault/``."""

META_LOSS = "meta/loss"
META_QUERY_MSE = "meta/query_mse"
META_PREADAPT_MSE = "meta/preadapt_mse"
META_LR = "meta/lr"
META_GRAD_NORM = "meta/grad_norm"
THROUGHPUT_TASKS_PER_S = "throughput/tasks_per_s"
THROUGHPUT_STEPS_PER_S = "throughput/steps_per_s"
FAULT_RECOMPUTED_TASKS = "fault/recomputed_tasks"
FAULT_FAILED_ATTEMPTS = "fault/failed_attempts"
VAL_MSE = "val/mse"
"""Validation query MSE after the training number of inner steps; best checkpoint monitors it."""


def val_mse_after(steps: int) -> str:
    return f"val/mse_step{steps}"


def shard_seconds(k: int) -> str:
    return f"shard/{k}/seconds"


def family_metric(family: str, name: str) -> str:
    return f"family/{family}/{name}"


def eval_key(shots: int, steps: int, stat: str) -> str:
    """``mse.k10.steps1.mean`` / ``.ci95``: the eval report's keys (``eval/`` prefixed in MLflow)."""
    return f"mse.k{shots}.steps{steps}.{stat}"
