"""The line a training run prints once its MLflow run exists; ``distmeta submit`` picks it out of
the job's log stream to link the run."""

RUN_MARKER = "distmeta: MLflow run"
"""Starts the line a training run prints once its MLflow run exists; ``distmeta submit`` picks it
out of the job's log stream."""


def announce(run_id: str, experiment_id: str, tracking_uri: str) -> str:
    """The line the learner prints once its MLflow run exists (:data:`RUN_MARKER`)."""
    return f"{RUN_MARKER} {run_id} experiment {experiment_id} tracking {tracking_uri}"
