"""Task families, their task data, seeding and sharding plans (pure torch; no ray/mlflow/lightning/omegaconf)."""

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.datasets import load_cifar_fs, load_cub, load_fc100, load_miniimagenet, load_omniglot, load_tiered
from distmeta.tasks.functions import KINDS as FUNCTION_KINDS
from distmeta.tasks.functions import FunctionFamily, SineFamily
from distmeta.tasks.glyphs import GlyphSource
from distmeta.tasks.images import ClassImages, EpisodeFamily
from distmeta.tasks.protocol import TaskData, TaskFamily
from distmeta.tasks.registry import FAMILIES, FamilyKind, FamilyRequest, family_kind, register
from distmeta.tasks.seeding import EVALUATION, TRAIN, VALIDATION, task_seed
from distmeta.tasks.sharding import assign

__all__ = [
    "EVALUATION", "FAMILIES", "FUNCTION_KINDS", "TRAIN", "VALIDATION", "ClassImages", "EpisodeFamily", "FamilyKind",
    "FamilyRequest", "FunctionFamily", "GlyphSource", "SineFamily", "TaskBatch", "TaskData", "TaskFamily", "assign",
    "family_kind", "load_cifar_fs", "load_cub", "load_fc100", "load_miniimagenet", "load_omniglot", "load_tiered", "register",
    "task_seed",
]  # fmt: skip
