"""Third-party log records distmeta causes and that say nothing a user can act on, kept out of a
run's output where they arise (never a process-wide filter)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quieter(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Records of logger ``name`` below ``level`` are dropped while inside."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextmanager
def quiet_model_logging() -> Iterator[None]:
    """While distmeta logs its models to MLflow: not MLflow's note on pickling at each save (both
    models are pickled on purpose: ``mlflow.pytorch.load_model`` returns the module itself)."""
    with quieter("mlflow.pyfunc"), quieter("mlflow.pytorch"):
        yield
