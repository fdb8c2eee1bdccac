"""What a shard worker is built from: plain values the recipe makes from the config, sent to
every actor (no ray import)."""

from __future__ import annotations

from dataclasses import dataclass

from distmeta.algorithms import Algorithm
from distmeta.models import ModelSpec
from distmeta.tasks import ClassImages, TaskFamily
from distmeta.tasks.mixture import Mixture

PRECISIONS = ("32", "bf16-mixed")
"""The shards' meta-gradient arithmetic: float32, or under bfloat16 autocast."""


@dataclass(frozen=True)
class ReplicaSpec:
    """All-reduce mode: what every replica of the meta-parameters applies alike each step (from
    the learner's settings; :mod:`distmeta.shard.replica`)."""

    meta_lr: float
    grad_clip: float = 0.0
    weighting: str = "count"
    loss_weights: tuple[tuple[str, float], ...] = ()
    on_nonfinite: str = "stop"
    timeout_s: float = 120.0
    """How long a collective waits for a missing member before it raises."""
    collective: str = "gloo"
    """``cluster.collective``: ``gloo``, ``nccl`` or ``auto`` (:mod:`distmeta.shard.collective`)."""
    own_gpu: bool = False
    """Every shard reserves a whole GPU (``cluster.gpus_per_shard >= 1``): ``auto`` may pick NCCL."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, as plain values (built from the config by :class:`distmeta.recipe.Recipe`)."""

    seed: int
    families: tuple[TaskFamily, ...]
    mixture: Mixture
    model: ModelSpec
    algorithm: Algorithm
    threads: int = 1
    device: str = "cpu"
    compile: bool = False
    chunk_size: int = 0
    batching: str = "vmap"
    """``vmap`` (batched over tasks, in chunks of ``chunk_size``) or ``loop`` (one task at a time)."""
    precision: str = "32"
    """``32`` or ``bf16-mixed`` (the meta-gradient computed under bfloat16 autocast)."""
    retain_freed_memory: bool = True
    """Keep freed memory in the process between tasks (:mod:`distmeta.shard.allocator`)."""
    partitions: int = 1
    """Class partitions per family (``shard_by: classes``): a task of family ``f`` draws from the
    classes of partition ``p`` (hashed from its key), data unit ``f * partitions + p``."""
    replica: ReplicaSpec | None = None
    """All-reduce mode: the worker holds and updates a replica of the meta-parameters."""


ShardData = tuple["ClassImages | None", ...]
"""Per data unit (a family of the mixture, or with class partitions one partition of a family:
unit ``f * partitions + p``), the training images this shard draws from (None: a computed family,
or a unit this shard does not own)."""
