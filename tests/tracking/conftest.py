"""Fixtures for the tracking tests: a local sqlite store, and loggers that are always closed."""

from __future__ import annotations

import pytest

from distmeta.tracking.run import make_logger
from distmeta.tracking.store import resolve_uri


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    """A sqlite store in a temporary folder, shared by a module's tests (each makes its own run)."""
    return resolve_uri("", tmp_path_factory.mktemp("store"))


@pytest.fixture
def new_logger(tmp_path):
    """``make_logger`` whose loggers' sender threads are stopped after the test."""
    made = []

    def make(*args, **kwargs):
        logger = make_logger(*args, **kwargs)
        made.append(logger)
        return logger

    yield make
    for logger in made:
        logger.close(5.0, tmp_path / "unsent")
