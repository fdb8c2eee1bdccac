"""Builder functions: the only code besides ``config/`` that reads the config. They turn its
sections into the plain arguments the core takes (families, data, models, algorithms, worker
specs, learner settings)."""
from __future__ import annotations

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
from distmeta.tasks.mixture import Mixture
from distmeta.tasks.sharding import Planner

IMAGE_SIZE = {"glyphs": 28, "omniglot": 28, "miniimagenet": 84}
CHANNELS = {"glyphs": 1, "omniglot": 1, "miniimagenet": 3}


def is_image(cfg: DistMetaConfig) -> bool:
    return not cfg.tasks.families and cfg.tasks.family in IMAGE_SIZE


def image_size(cfg: DistMetaConfig) -> int:
    return cfg.tasks.image_size or IMAGE_SIZE[cfg.tasks.family]


def family(cfg: DistMetaConfig, split: str = "train") -> Family:
    """The single task family of ``split`` (``train``, ``val`` or ``test``), without its images."""
    t = cfg.tasks
    if t.family == "sine":
        return SineFamily(shots=t.shots, query=t.query, amplitude=tuple(t.amplitude), phase=tuple(t.phase), x_range=tuple(t.x_range))
    if not is_image(cfg):
        return FunctionFamily(t.family, shots=t.shots, query=t.query, x_range=tuple(t.x_range))
    rotations = (t.family == "omniglot") if t.rotations is None else t.rotations
    return EpisodeFamily(t.family, ways=t.ways, shots=t.shots, query=t.query, rotations=rotations and split == "train")


def families(cfg: DistMetaConfig, split: str = "train") -> tuple[Family, ...]:
    """Every family of the run (one unless ``tasks.families`` lists a mixture), without images."""
    t = cfg.tasks
    if not t.families:
        return (family(cfg, split),)
    out = []
    for i, f in enumerate(t.families):
        try:
            out.append(FunctionFamily(f.name, shots=t.shots, query=t.query, x_range=tuple(t.x_range), name=f.label or f.name,
                                      ranges=tuple((k, tuple(v)) for k, v in f.ranges.items())))
        except (ValueError, TypeError) as exc:
            raise UserError(f"tasks.families[{i}]: {exc}") from None
    return tuple(out)


def mixture(cfg: DistMetaConfig) -> Mixture:
    """The families' labels and sampling weights (a one-family mixture for a single family)."""
    t = cfg.tasks
    if not t.families:
        return Mixture((family(cfg).name,), (1.0,))
    return Mixture(tuple(f.label or f.name for f in t.families), tuple(float(f.weight) for f in t.families))


def data(cfg: DistMetaConfig, split: str) -> ClassImages | None:
    """The images of ``split`` (None for sine): rendered for glyphs, read from ``tasks.root`` otherwise."""
    t = cfg.tasks
    if t.family == "glyphs":
        return GlyphSource(image_size=image_size(cfg)).load(split)
    if t.family == "omniglot":
        return load_omniglot(t.root, split, image_size=image_size(cfg), class_split=t.class_split)
    if t.family == "miniimagenet":
        return load_miniimagenet(t.root, split, image_size=image_size(cfg))
    return None


def families_with_data(cfg: DistMetaConfig, split: str) -> tuple[Family, ...]:
    """The families of ``split`` with their images attached (image families are single for now)."""
    images = data(cfg, split)
    return tuple(f.with_data(images) for f in families(cfg, split))


def algorithm(cfg: DistMetaConfig) -> Algorithm:
    a, t = cfg.algorithm, cfg.tasks
    return algorithms.build(
        a.name,
        loss="cross_entropy" if is_image(cfg) else "mse",
        steps=a.inner_steps,
        lr=a.inner_lr,
        first_order=a.first_order,
        checkpoint=a.checkpoint_inner,
        ways=t.ways,
        reptile_inner_batch=a.reptile.inner_batch,
        reptile_use_query=a.reptile.use_query,
    )


def model_spec(cfg: DistMetaConfig) -> ModelSpec:
    m = cfg.model
    if is_image(cfg):
        size = image_size(cfg)
        shape: tuple[int, ...] = (CHANNELS[cfg.tasks.family], size, size)
        outputs = 0 if cfg.algorithm.name == "protonet" else cfg.tasks.ways  # ProtoNets embed, the rest classify
    else:
        shape, outputs = (1,), 1
    return ModelSpec(m.name, shape, outputs, hidden=tuple(m.hidden), filters=m.filters)


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
    )


def shard_group(cfg: DistMetaConfig) -> ShardGroup:
    """In-process group for ``num_shards=0``, else one Ray actor per shard (Ray must be initialised).
    Training images are loaded here, once, and reach the actors through the object store."""
    c = cfg.cluster
    train = data(cfg, "train")
    if train is not None:
        checked(family(cfg, "train").with_data(train), "training split")
    whole = None if train is None else (train,)  # per family; image families are single for now
    if c.num_shards == 0:
        return LocalShardGroup(worker_spec(cfg), whole)
    if train is not None and cfg.tasks.shard_by == "classes":
        shard_data = [(train.partition(k, c.num_shards),) for k in range(c.num_shards)]
        for k, (part,) in enumerate(shard_data):
            checked(family(cfg, "train").with_data(part), f"classes of shard {k}")
    else:
        shard_data = [whole] * c.num_shards
    device = "cuda" if c.gpus_per_shard > 0 else "cpu"
    resources = ActorResources(num_cpus=c.cpus_per_shard, num_gpus=c.gpus_per_shard, max_restarts=c.max_actor_restarts)
    return RayShardGroup(worker_spec(cfg, device), c.num_shards, resources, timeout_s=c.step_timeout_s, shard_data=shard_data)


def learner_settings(cfg: DistMetaConfig) -> LearnerSettings:
    a, tr, t = cfg.algorithm, cfg.trainer, cfg.tasks
    shard_by = "family" if t.shard_by == "family" else "tasks"  # classes: a fixed split of indices too
    planner = Planner(a.meta_batch_size, cfg.cluster.num_shards, shard_by, mixture(cfg), cfg.seed)
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
