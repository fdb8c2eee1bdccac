"""Builder functions: the only code besides ``config/`` that reads the config. They turn its
sections into the plain arguments the core takes (families, data, models, algorithms, worker
specs, learner settings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distmeta import algorithms
from distmeta.algorithms import Algorithm
from distmeta.config import DistMetaConfig
from distmeta.errors import UserError
from distmeta.learner.module import LearnerSettings
from distmeta.models import ModelSpec
from distmeta.shard.group import ActorResources, LocalShardGroup, RayShardGroup, ShardGroup
from distmeta.shard.worker import WorkerSpec
from distmeta.tasks import ClassImages, EpisodeFamily, Family, FunctionFamily, GlyphSource, SineFamily
from distmeta.tasks.datasets import load_miniimagenet, load_omniglot
from distmeta.tasks.mixture import Mixture, unit_owners
from distmeta.tasks.sharding import Planner

IMAGE_SIZE = {"glyphs": 28, "omniglot": 28, "miniimagenet": 84}
CHANNELS = {"glyphs": 1, "omniglot": 1, "miniimagenet": 3}


@dataclass(frozen=True)
class Entry:
    """One family of the run as the config states it (a single ``tasks.family`` is one entry)."""

    kind: str
    label: str
    weight: float = 1.0
    loss_weight: float = 1.0
    ranges: tuple[tuple[str, tuple[float, float]], ...] = ()
    root: str = ""
    ways: int = 5
    shots: int = 10
    query: int = 10


def entries(cfg: DistMetaConfig) -> list[Entry]:
    """The run's families, each with its own settings resolved (a family's 0 means ``tasks.*``)."""
    t = cfg.tasks
    if not t.families:
        return [Entry(t.family, t.family, root=t.root, ways=t.ways, shots=t.shots, query=t.query)]
    return [
        Entry(
            f.name,
            f.label or f.name,
            float(f.weight),
            float(f.loss_weight),
            tuple((k, tuple(v)) for k, v in f.ranges.items()),
            f.root or t.root,
            f.ways or t.ways,
            f.shots or t.shots,
            f.query or t.query,
        )
        for f in t.families
    ]


def is_image(cfg: DistMetaConfig) -> bool:
    return entries(cfg)[0].kind in IMAGE_SIZE


def image_size(cfg: DistMetaConfig) -> int:
    """The one side every family's images are resized to: ``tasks.image_size``, else the largest standard."""
    return cfg.tasks.image_size or max(IMAGE_SIZE[e.kind] for e in entries(cfg))


def channels(cfg: DistMetaConfig) -> int:
    """Grey families are repeated to 3 channels when mixed with colour ones (one input shape)."""
    return max(CHANNELS[e.kind] for e in entries(cfg))


def family_of(cfg: DistMetaConfig, entry: Entry, split: str = "train") -> Family:
    """One family of ``split`` (``train``, ``val`` or ``test``), without its images."""
    t = cfg.tasks
    if entry.kind == "sine" and not t.families:
        return SineFamily(
            shots=entry.shots, query=entry.query, amplitude=tuple(t.amplitude), phase=tuple(t.phase), x_range=tuple(t.x_range)
        )
    if entry.kind not in IMAGE_SIZE:
        try:
            return FunctionFamily(
                entry.kind, shots=entry.shots, query=entry.query, ranges=entry.ranges, x_range=tuple(t.x_range), name=entry.label
            )
        except ValueError as exc:
            raise UserError(f"tasks.families ({entry.label}): {exc}") from None
    rotations = (entry.kind == "omniglot") if t.rotations is None else t.rotations
    return EpisodeFamily(
        entry.label, ways=entry.ways, shots=entry.shots, query=entry.query, rotations=rotations and split == "train"
    )


def family(cfg: DistMetaConfig, split: str = "train") -> Family:
    """The first (for a single-family run, the only) family of ``split``."""
    return family_of(cfg, entries(cfg)[0], split)


def families(cfg: DistMetaConfig, split: str = "train") -> tuple[Family, ...]:
    """Every family of the run (one unless ``tasks.families`` lists a mixture), without images."""
    return tuple(family_of(cfg, e, split) for e in entries(cfg))


def mixture(cfg: DistMetaConfig) -> Mixture:
    """The families' labels and sampling weights (a one-family mixture for a single family)."""
    es = entries(cfg)
    return Mixture(tuple(e.label for e in es), tuple(e.weight for e in es))


def data_of(cfg: DistMetaConfig, entry: Entry, split: str) -> ClassImages | None:
    """The images of one family's ``split`` (None for regression): rendered for glyphs, read from
    the family's root otherwise; resized to the run's one side and channel count."""
    t, size = cfg.tasks, image_size(cfg) if is_image(cfg) else 0
    if entry.kind == "glyphs":
        images = GlyphSource(image_size=size).load(split)
    elif entry.kind == "omniglot":
        images = load_omniglot(entry.root, split, image_size=size, class_split=t.class_split)
    elif entry.kind == "miniimagenet":
        images = load_miniimagenet(entry.root, split, image_size=size)
    else:
        return None
    return images.with_channels(channels(cfg))


def data(cfg: DistMetaConfig, split: str) -> ClassImages | None:
    """The first family's images of ``split`` (the only family's, for a single-family run)."""
    return data_of(cfg, entries(cfg)[0], split)


def families_with_data(cfg: DistMetaConfig, split: str) -> tuple[Family, ...]:
    """The families of ``split`` with their images attached."""
    return tuple(family_of(cfg, e, split).with_data(data_of(cfg, e, split)) for e in entries(cfg))


def algorithm(cfg: DistMetaConfig) -> Algorithm:
    a = cfg.algorithm
    return algorithms.build(
        a.name,
        loss="cross_entropy" if is_image(cfg) else "mse",
        steps=a.inner_steps,
        lr=a.inner_lr,
        first_order=a.first_order,
        checkpoint=a.checkpoint_inner,
        ways=max(e.ways for e in entries(cfg)),  # ProtoNets: prototypes for the largest N, absent classes masked
        reptile_inner_batch=a.reptile.inner_batch,
        reptile_use_query=a.reptile.use_query,
    )


def model_spec(cfg: DistMetaConfig) -> ModelSpec:
    m, es = cfg.model, entries(cfg)
    if is_image(cfg):
        size = image_size(cfg)
        shape: tuple[int, ...] = (channels(cfg), size, size)
        outputs = [0 if cfg.algorithm.name == "protonet" else e.ways for e in es]  # ProtoNets embed, the rest classify
    else:
        shape, outputs = (1,), [1] * len(es)
    heads = tuple((e.label, n) for e, n in zip(es, outputs)) if m.heads == "per_family" else ()
    for label, _ in heads:  # heads are named after the labels, in an nn.ModuleDict
        if hasattr(nn.ModuleDict, label):
            raise UserError(
                f"tasks.families label '{label}' is a name torch's nn.ModuleDict uses itself; with "
                "model.heads=per_family choose another label"
            )
    return ModelSpec(m.name, shape, outputs[0], hidden=tuple(m.hidden), filters=m.filters, heads=heads)


def model(cfg: DistMetaConfig) -> nn.Module:
    """The meta-model (the algorithm's view of the network), initialised from ``cfg.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return algorithm(cfg).meta_model(model_spec(cfg).build())


def worker_spec(cfg: DistMetaConfig, device: str = "cpu") -> WorkerSpec:
    a, c = cfg.algorithm, cfg.cluster
    threads = max(1, int(c.cpus_per_shard)) if c.num_shards > 0 else 0  # 0: keep the process's threads
    return WorkerSpec(
        seed=cfg.seed,
        families=families(cfg, "train"),
        mixture=mixture(cfg),
        model=model_spec(cfg),
        algorithm=algorithm(cfg),
        threads=threads,
        device=device,
        compile=a.compile,
        chunk_size=a.chunk_size,
        precision=cfg.trainer.precision,
        batching=batching(cfg, device),
        partitions=class_partitions(cfg),
        retain_freed_memory=c.retain_freed_memory,
    )


def shard_device(cfg: DistMetaConfig) -> str:
    """Where shard actors compute: ``cuda`` when they hold GPUs, else ``cpu``."""
    return "cuda" if cfg.cluster.gpus_per_shard > 0 else "cpu"


def batching(cfg: DistMetaConfig, device: str = "cpu") -> str:
    """``algorithm.batching`` resolved: ``auto`` loops over image tasks on CPU (vmapped
    convolutions are slower than a loop there) and vmaps otherwise."""
    choice = cfg.algorithm.batching
    if choice == "auto":
        choice = "loop" if is_image(cfg) and device == "cpu" else "vmap"
    return choice


def class_partitions(cfg: DistMetaConfig) -> int:
    """Class partitions per family: ``tasks.class_partitions`` under ``shard_by: classes``, else 1."""
    return cfg.tasks.class_partitions if cfg.tasks.shard_by == "classes" else 1


def training_data(cfg: DistMetaConfig) -> tuple:
    """The training images per data unit (a family, or one class part of a family), loaded once
    and checked against the episodes; empty for regression. Raises :class:`UserError` for data
    that cannot serve the run, before anything is started."""
    es = entries(cfg)
    train = tuple(data_of(cfg, e, "train") for e in es)  # per family; None for regression
    for e, images in zip(es, train):
        if images is not None:
            checked(family_of(cfg, e, "train").with_data(images), "training split")
    parts = class_partitions(cfg)
    units: tuple = ()  # per data unit (family, or family's class partition f * parts + p)
    if any(d is not None for d in train):
        units = tuple(None if d is None else d.partition(p, parts) if parts > 1 else d for d in train for p in range(parts))
    for u, part in enumerate(units):
        if parts > 1 and part is not None:
            checked(family_of(cfg, es[u // parts], "train").with_data(part), f"class partition {u % parts} of the training split")
    return units


def shard_group(cfg: DistMetaConfig, units: tuple | None = None) -> ShardGroup:
    """In-process group for ``num_shards=0``, else one Ray actor per shard (Ray must be initialised).
    ``units`` (:func:`training_data`, loaded here when not given) reach the actors through the
    object store, each actor getting the units it owns."""
    c = cfg.cluster
    units = training_data(cfg) if units is None else units
    if c.num_shards == 0:
        return LocalShardGroup(worker_spec(cfg), units)
    if units and cfg.tasks.shard_by in ("family", "classes"):  # each actor gets only the units it owns
        owners = unit_owners(len(units), c.num_shards)
        shard_data = [tuple(d if k in owners[u] else None for u, d in enumerate(units)) for k in range(c.num_shards)]
    else:
        shard_data = [units] * c.num_shards
    device = shard_device(cfg)
    resources = ActorResources(
        num_cpus=c.cpus_per_shard, num_gpus=c.gpus_per_shard, max_restarts=c.max_actor_restarts, strategy=c.placement_strategy
    )
    return RayShardGroup(
        worker_spec(cfg, device),
        c.num_shards,
        resources,
        timeout_s=c.step_timeout_s,
        shard_data=shard_data,
        local_channel=c.local_channel,
    )


def learner_settings(cfg: DistMetaConfig) -> LearnerSettings:
    a, tr, t = cfg.algorithm, cfg.trainer, cfg.tasks
    planner = Planner(a.meta_batch_size, cfg.cluster.num_shards, t.shard_by, mixture(cfg), cfg.seed, class_partitions(cfg))
    algo = algorithm(cfg)
    return LearnerSettings(
        planner=planner,
        meta_lr=a.meta_lr,
        lr_schedule=a.lr_schedule,
        min_lr_ratio=a.min_lr_ratio,
        max_steps=tr.max_steps,
        grad_clip=tr.grad_clip,
        log_every_n_steps=tr.log_every_n_steps,
        algorithm=algo,
        train_inner_steps=a.inner_steps if algo.adapts else 0,
        val_steps=tuple(sorted({0, 1, a.inner_steps, 10})) if algo.adapts else (0,),
        seed=cfg.seed,
        val_tasks=tr.val_tasks,
        family_weighting=t.family_weighting,
        loss_weights=tuple((f.label or f.name, float(f.loss_weight)) for f in t.families),
        on_nonfinite=tr.on_nonfinite,
        staleness=tr.staleness,
        delay_compensation=tr.delay_compensation,
    )


def validation_families(cfg: DistMetaConfig) -> tuple[Family, ...]:
    """The validation split's families with their images: their tasks (own stream, step 0) are
    the same at every validation and across resumes."""
    return tuple(checked(f, "validation split") for f in families_with_data(cfg, "val"))


def checked(fam: Family, what: str, shots: int | None = None, query: int | None = None) -> Family:
    """``fam``, after checking its episodes can be drawn; a :class:`UserError` naming the keys if not."""
    if isinstance(fam, EpisodeFamily):
        try:
            fam.check(shots=shots, query=query, what=what)
        except ValueError as exc:
            raise UserError(f"{exc}; adjust tasks.ways, tasks.shots, tasks.query or evaluation.shots/query") from None
    return fam
