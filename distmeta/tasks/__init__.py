"""Task batches, task families and sharding plans (pure torch; no ray/mlflow/lightning/omegaconf)."""
from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.datasets import load_miniimagenet, load_omniglot
from distmeta.tasks.glyphs import GlyphSource
from distmeta.tasks.images import ClassImages, EpisodeFamily
from distmeta.tasks.seeding import EVALUATION, TRAIN, VALIDATION, task_seed
from distmeta.tasks.sharding import assign
from distmeta.tasks.sine import SineFamily

Family = SineFamily | EpisodeFamily

__all__ = [
    "EVALUATION", "TRAIN", "VALIDATION", "ClassImages", "EpisodeFamily", "Family", "GlyphSource", "SineFamily", "TaskBatch",
    "assign", "load_miniimagenet", "load_omniglot", "task_seed",
]
