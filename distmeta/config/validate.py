"""Checks the schema's types cannot express: choices, ranges and relations between keys.

Every choice list and per-choice rule comes from where the choice is implemented (the
algorithm, model and task-family registries, the learner's settings, the shard group's options),
so validation cannot disagree with the code that runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

from distmeta.algorithms import ALGORITHMS, PATHS, algorithm_kind
from distmeta.algorithms.adapted import serves
from distmeta.algorithms.mmaml import ENCODERS
from distmeta.config.checks import choice as _choice
from distmeta.config.checks import fail as _fail
from distmeta.config.checks import refuse_set
from distmeta.config.environments import image_settings, validate_environments
from distmeta.config.mixture import validate_mixture
from distmeta.config.schema import DistMetaConfig
from distmeta.learner.settings import LEARNER_DEVICES, LR_SCHEDULES, ON_NONFINITE, STALENESS
from distmeta.models import MODELS, NORMS, model_kind
from distmeta.shard.allreduce_group import REPLICA_CALLS
from distmeta.shard.collective import BACKENDS
from distmeta.shard.group import AGGREGATIONS
from distmeta.shard.placement import STRATEGIES
from distmeta.shard.spec import PRECISIONS
from distmeta.tasks import FAMILIES, family_kind
from distmeta.tasks.sharding import SHARD_BY

BATCHING = ("auto", *PATHS)


MAX_LR = {"algorithm.inner_lr": 10.0, "algorithm.meta_lr": 1.0}
"""Past these a step is no longer a step (Adam moves each weight by about meta_lr)."""
MIN_IMAGE_SIZE = 16
"""Conv4 halves an image four times."""
MIN_STEP_TIMEOUT_S = 1.0
"""Below this, a healthy shard's answer is itself late (a Ray call alone takes milliseconds, a
first compiled step seconds)."""


def validate(cfg: DistMetaConfig) -> None:
    a, t, c, tr = cfg.algorithm, cfg.tasks, cfg.cluster, cfg.trainer
    _finite(cfg)
    _choices(cfg)
    _signs(cfg)
    for key, limit in MAX_LR.items():
        value = a.inner_lr if key == "algorithm.inner_lr" else a.meta_lr
        if value > limit:
            _fail(key, f"{value} is past any useful learning rate (at most {limit})")
    if c.step_timeout_s < MIN_STEP_TIMEOUT_S:
        _fail("cluster.step_timeout_s", f"{c.step_timeout_s} s is shorter than any step takes; use at least {MIN_STEP_TIMEOUT_S}")
    if not algorithm_kind(a.name).cls.adapts and a.inner_grad_clip:
        _fail("algorithm.inner_grad_clip", f"{a.name} has no inner loop to clip")
    if algorithm_kind(a.name).cls.adapts and a.inner_steps == 0:
        _fail("algorithm.inner_steps", f"{a.name} needs at least one inner step (0 would be plain multi-task pre-training)")
    _validate_tasks(cfg)
    if not 0.0 <= a.min_lr_ratio <= 1.0:
        _fail("algorithm.min_lr_ratio", f"must lie in [0, 1], got {a.min_lr_ratio}")
    if c.num_shards > 0 and a.meta_batch_size < c.num_shards:
        _fail(
            "algorithm.meta_batch_size",
            f"{a.meta_batch_size} tasks cannot be split over cluster.num_shards={c.num_shards} shards; "
            "use at least one task per shard",
        )
    if c.num_shards > 0 and c.cpus_per_shard == 0 and c.gpus_per_shard == 0:
        _fail("cluster.cpus_per_shard", "a shard actor needs some CPU or GPU; set cpus_per_shard or gpus_per_shard")
    if c.gpus_per_shard > 1 and c.gpus_per_shard != int(c.gpus_per_shard):
        _fail("cluster.gpus_per_shard", f"above 1 it must be a whole number, got {c.gpus_per_shard}")
    for key, rng in [("tasks.amplitude", t.amplitude), ("tasks.phase", t.phase), ("tasks.x_range", t.x_range)]:
        if len(rng) != 2 or not rng[0] <= rng[1]:
            _fail(key, f"must be [low, high] with low <= high, got {rng}")
    if not t.noise >= 0:
        _fail("tasks.noise", f"the targets' noise standard deviation must be 0 or more, got {t.noise}")
    if not cfg.model.hidden or any(w <= 0 for w in cfg.model.hidden):
        _fail("model.hidden", f"must list positive layer widths, got {cfg.model.hidden}")
    _validate_widths(cfg.model.name, cfg.model.widths)
    _validate_dropblock(cfg.model)
    if algorithm_kind(a.name).cls.modulates and not model_kind(cfg.model.name).modulated:
        modulated = ", ".join(n for n, k in MODELS.items() if k.modulated)
        _fail("model.name", f"{a.name} modulates the network's layers: use model.name={modulated}, not {cfg.model.name}")
    if a.mmaml.hidden < 1:
        _fail("algorithm.mmaml.hidden", f"the modulation network needs a positive width, got {a.mmaml.hidden}")
    if a.cavia.contexts < 1:
        _fail("algorithm.cavia.contexts", f"a task adapts at least 1 context parameter, got {a.cavia.contexts}")
    if any(k <= 0 for k in cfg.evaluation.shots):
        _fail("evaluation.shots", f"must list positive shot counts, got {cfg.evaluation.shots}")
    if not cfg.evaluation.steps or any(s < 0 for s in cfg.evaluation.steps):
        _fail("evaluation.steps", f"must list non-negative step counts, got {cfg.evaluation.steps}")
    if tr.delay_compensation < 0 or not math.isfinite(tr.delay_compensation):
        _fail("trainer.delay_compensation", f"must be a finite number >= 0, got {tr.delay_compensation}")
    if not cfg.tracking.experiment:
        _fail("tracking.experiment", "must not be empty")


def _validate_dropblock(m) -> None:
    drops = model_kind(m.name).drops
    for key, value, unset in (("model.dropblock", m.dropblock, None), ("model.dropblock_size", m.dropblock_size, 0)):
        if value != unset and not drops:
            dropping = ", ".join(n for n, k in MODELS.items() if k.drops)
            _fail(key, f"sets the DropBlock of {dropping}; model.name={m.name} has none")
    if m.dropblock is not None and not 0.0 <= m.dropblock < 1.0:
        _fail("model.dropblock", f"is the share of features dropped, in [0, 1), got {m.dropblock}")
    if m.dropblock_size < 0:
        _fail("model.dropblock_size", f"is a square's side (0: auto), got {m.dropblock_size}")


def _validate_widths(name: str, widths: list[int]) -> None:
    takes = model_kind(name).widths
    if widths and not takes:
        residual = ", ".join(n for n, k in MODELS.items() if k.widths)
        _fail("model.widths", f"sets the stage widths of {residual}; model.name={name} takes none")
    if widths and (len(widths) != len(takes) or any(w <= 0 for w in widths)):
        _fail("model.widths", f"{name} takes {len(takes)} positive widths (default {list(takes)}), got {widths}")


def _finite(cfg: DistMetaConfig) -> None:
    """NaN or infinity anywhere in the config (lists, the families and their ranges included)."""
    for key, value in _numbers("", cfg):
        if not math.isfinite(value):
            _fail(key, f"must be a finite number, got {value}")


def _numbers(key: str, obj) -> Iterator[tuple[str, float]]:
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _numbers(f"{key}.{f.name}" if key else f.name, getattr(obj, f.name))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(f"{key}.{k}", v)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _numbers(f"{key}[{i}]", v)
    elif isinstance(obj, float):
        yield key, obj


def _choices(cfg: DistMetaConfig) -> None:
    a, t, c, tr = cfg.algorithm, cfg.tasks, cfg.cluster, cfg.trainer
    _choice("algorithm.name", a.name, ALGORITHMS)
    _choice("algorithm.lr_schedule", a.lr_schedule, LR_SCHEDULES)
    _choice("algorithm.mmaml.encoder", a.mmaml.encoder, ENCODERS)
    _choice("tasks.family", t.family, FAMILIES)
    _choice("model.name", cfg.model.name, MODELS)
    _choice("model.norm", cfg.model.norm, ("auto", *NORMS))
    if cfg.model.norm != "auto" and not model_kind(cfg.model.name).normalised:
        normalised = ", ".join(n for n, k in MODELS.items() if k.normalised)
        _fail("model.norm", f"chooses the normalisation of {normalised}; model.name={cfg.model.name} has none")
    _choice("cluster.placement_strategy", c.placement_strategy, STRATEGIES)
    _choice("cluster.aggregation", c.aggregation, AGGREGATIONS)
    _choice("cluster.replica_calls", c.replica_calls, REPLICA_CALLS)
    if c.replica_calls != "tasks" and c.aggregation != "allreduce":
        _fail("cluster.replica_calls", "is how the learner calls replicas: it needs cluster.aggregation=allreduce")
    _choice("cluster.collective", c.collective, BACKENDS)
    if c.collective == "nccl" and (c.aggregation != "allreduce" or c.gpus_per_shard < 1):
        _fail("cluster.collective", "nccl joins the replicas' GPUs: it needs cluster.aggregation=allreduce and "
              "cluster.gpus_per_shard of 1 or more (one GPU per shard actor)")  # fmt: skip
    if c.dashboard and (c.num_shards < 1 or c.address):
        _fail("cluster.dashboard", "starts the dashboard of an in-process Ray: it needs cluster.num_shards of 1 or more and no cluster.address (a cluster's dashboard is the cluster's own: `ray start --head` runs it)")  # fmt: skip
    if cfg.tracking.register_model and (
        cfg.model.heads == "per_family" or cfg.model.share == "none" or not serves(algorithm_kind(a.name).cls)
    ):
        _fail("tracking.register_model", f"registers the adaptive model, which no run with per-family heads or networks or with {a.name} (no query_outputs) logs")  # fmt: skip
    if c.aggregation == "allreduce" and c.num_shards < 1:
        _fail("cluster.aggregation", "allreduce runs among shard actors: set cluster.num_shards to 1 or more")
    if c.aggregation == "allreduce" and tr.staleness:
        _fail(
            "trainer.staleness",
            "pipelines the learner's update; with cluster.aggregation=allreduce the replicas update themselves",
        )
    _choice("cluster.learner_device", c.learner_device, LEARNER_DEVICES)
    _choice("algorithm.batching", a.batching, BATCHING)
    _choice("trainer.on_nonfinite", tr.on_nonfinite, ON_NONFINITE)
    _choice("trainer.precision", tr.precision, PRECISIONS)
    if tr.staleness not in STALENESS:
        _fail("trainer.staleness", f"must be 0 (synchronous) or 1 (pipelined), got {tr.staleness}")


def _signs(cfg: DistMetaConfig) -> None:
    a, t, c, tr, e = cfg.algorithm, cfg.tasks, cfg.cluster, cfg.trainer, cfg.evaluation
    positive = {
        "algorithm.inner_lr": a.inner_lr, "algorithm.meta_lr": a.meta_lr, "trainer.max_steps": tr.max_steps,
        "trainer.val_every_n_steps": tr.val_every_n_steps, "trainer.val_tasks": tr.val_tasks,
        "trainer.log_every_n_steps": tr.log_every_n_steps, "algorithm.meta_batch_size": a.meta_batch_size,
        "tasks.shots": t.shots, "tasks.query": t.query, "tasks.ways": t.ways, "model.filters": cfg.model.filters,
        "checkpoint.every_n_steps": cfg.checkpoint.every_n_steps, "cluster.step_timeout_s": c.step_timeout_s,
        "evaluation.num_tasks": e.num_tasks,
    }  # fmt: skip
    for key, value in positive.items():
        if not value > 0:
            _fail(key, f"must be positive, got {value}")
    non_negative = {
        "algorithm.inner_steps": a.inner_steps, "cluster.num_shards": c.num_shards, "cluster.cpus_per_shard": c.cpus_per_shard,
        "cluster.gpus_per_shard": c.gpus_per_shard, "cluster.max_actor_restarts": c.max_actor_restarts,
        "trainer.grad_clip": tr.grad_clip, "algorithm.chunk_size": a.chunk_size, "algorithm.inner_grad_clip": a.inner_grad_clip,
        "algorithm.reptile.inner_batch": a.reptile.inner_batch, "tasks.image_size": t.image_size, "evaluation.query": e.query,
        "tracking.system_metrics_s": cfg.tracking.system_metrics_s,
    }  # fmt: skip
    for key, value in non_negative.items():
        if value < 0:
            _fail(key, f"must be zero or positive, got {value}")


def _validate_tasks(cfg: DistMetaConfig) -> None:
    """The family decides what the rest must be: image families classify, regression families regress."""
    t, a, m = cfg.tasks, cfg.algorithm, cfg.model
    _choice("tasks.shard_by", t.shard_by, SHARD_BY)
    validate_mixture(cfg)
    if validate_environments(cfg):
        return
    kinds = [family_kind(f.name) for f in t.families] or [family_kind(t.family)]
    if not kinds[0].images:
        what = "a mixture of regression families" if t.families else f"tasks.family={t.family}"
        refuse_set(image_settings(t), f"{what}: it applies to image families only")
        if t.shard_by == "classes":
            _fail("tasks.shard_by", f"'classes' partitions image classes; {what} has none")
        if algorithm_kind(a.name).cls.classification_only:
            images = ", ".join(n for n, k in FAMILIES.items() if k.images)
            _fail("algorithm.name", f"{a.name} classifies; use an image family (tasks.family={images})")
        if model_kind(m.name).images_only:
            vector = ", ".join(n for n, k in MODELS.items() if not (k.images_only or k.policy))
            _fail("model.name", f"regression inputs are scalars: use model.name={vector}, not {m.name}")
        return
    if a.mmaml.standardize and algorithm_kind(a.name).settings == "mmaml":
        _fail("algorithm.mmaml.standardize", "it standardises regression targets; class labels are read one-hot")
    if not t.families and kinds[0].needs_root and not t.root:
        _fail("tasks.root", f"tasks.family={t.family} reads a local copy of the dataset: set tasks.root to its folder")
    if t.class_split and (not any(k.class_split for k in kinds) or len(t.class_split) != 3 or any(n <= 0 for n in t.class_split)):
        takes = ", ".join(n for n, k in FAMILIES.items() if k.class_split)
        _fail("tasks.class_split", f"only {takes} takes one, as three positive counts [train, val, test]; got {t.class_split}")
    if t.rotations and not all(k.rotatable for k in kinds):
        _fail("tasks.rotations", "rotated photos are not new classes; rotations are for character families")
    if t.ways < 2:
        _fail("tasks.ways", f"an episode needs at least 2 classes, got {t.ways}")
    refuse_set([("tasks.noise", t.noise, 0.0)], "image families: it is the noise of regression targets")
    if 0 < t.image_size < MIN_IMAGE_SIZE:
        _fail(
            "tasks.image_size",
            f"{t.image_size} is too small: the backbones pool an image down 16-fold; use at least {MIN_IMAGE_SIZE} (0: the family's own)",
        )
    if t.shard_by == "classes" and t.class_partitions < 1:
        _fail("tasks.class_partitions", f"must be at least 1, got {t.class_partitions}")
