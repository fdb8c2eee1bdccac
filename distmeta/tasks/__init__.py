"""Task batches, task families and sharding plans (pure torch; no ray/mlflow/lightning/omegaconf)."""

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.datasets import load_miniimagenet, load_omniglot
from distmeta.tasks.functions import KINDS as FUNCTION_KINDS
from distmeta.tasks.functions import FunctionFamily, SineFamily
from distmeta.tasks.glyphs import GlyphSource
from distmeta.tasks.images import ClassImages, EpisodeFamily
from distmeta.tasks.seeding import EVALUATION, TRAIN, VALIDATION, task_seed
from distmeta.tasks.sharding import assign

Family = FunctionFamily | EpisodeFamily

__all__ = [
    "EVALUATION",
    "FUNCTION_KINDS",
    "TRAIN",
    "VALIDATION",
    "ClassImages",
    "EpisodeFamily",
    "Family",
    "FunctionFamily",
    "GlyphSource",
    "SineFamily",
    "TaskBatch",
    "assign",
    "load_miniimagenet",
    "load_omniglot",
    "task_seed",
]
