"""Task batches, task families and sharding plans (pure torch; no ray/mlflow/lightning/omegaconf)."""
from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.seeding import EVALUATION, TRAIN, VALIDATION, task_seed
from distmeta.tasks.sharding import assign
from distmeta.tasks.sine import SineFamily

__all__ = ["EVALUATION", "TRAIN", "VALIDATION", "SineFamily", "TaskBatch", "assign", "task_seed"]
