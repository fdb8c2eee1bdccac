"""Builder functions: the only code besides ``config/`` that reads the config. They turn its
sections into the plain arguments the core takes (families, models, worker specs, learner settings)."""
from __future__ import annotations

import torch
from torch import nn

from distmeta import models
from distmeta.algorithms import inner_loop
from distmeta.config import DistMetaConfig
from distmeta.learner.module import LearnerSettings
from distmeta.shard.group import ActorResources, LocalShardGroup, RayShardGroup, ShardGroup
from distmeta.shard.worker import WorkerSpec
from distmeta.tasks import VALIDATION, SineFamily, TaskBatch, assign


def family(cfg: DistMetaConfig) -> SineFamily:
    t = cfg.tasks
    return SineFamily(shots=t.shots, query=t.query, amplitude=tuple(t.amplitude), phase=tuple(t.phase), x_range=tuple(t.x_range))


def model(cfg: DistMetaConfig) -> nn.Module:
    """The meta-model, initialised from ``cfg.seed`` (same init on every machine)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return models.build(cfg.model.name, hidden=cfg.model.hidden)


def worker_spec(cfg: DistMetaConfig, device: str = "cpu") -> WorkerSpec:
    a, c = cfg.algorithm, cfg.cluster
    threads = max(1, int(c.cpus_per_shard)) if c.num_shards > 0 else 0  # 0: keep the process's threads
    return WorkerSpec(
        seed=cfg.seed,
        family=family(cfg),
        model_name=cfg.model.name,
        hidden=tuple(cfg.model.hidden),
        inner=inner_loop(a.name, steps=a.inner_steps, lr=a.inner_lr),
        threads=threads,
        device=device,
        compile=a.compile,
    )


def shard_group(cfg: DistMetaConfig) -> ShardGroup:
    """In-process group for ``num_shards=0``, else one Ray actor per shard (Ray must be initialised)."""
    c = cfg.cluster
    if c.num_shards == 0:
        return LocalShardGroup(worker_spec(cfg))
    device = "cuda" if c.gpus_per_shard > 0 else "cpu"
    resources = ActorResources(num_cpus=c.cpus_per_shard, num_gpus=c.gpus_per_shard, max_restarts=c.max_actor_restarts)
    return RayShardGroup(worker_spec(cfg, device), c.num_shards, resources, timeout_s=c.step_timeout_s)


def learner_settings(cfg: DistMetaConfig) -> LearnerSettings:
    a, tr = cfg.algorithm, cfg.trainer
    plan = tuple(tuple(r) for r in assign(a.meta_batch_size, cfg.cluster.num_shards))
    return LearnerSettings(
        plan=plan,
        meta_lr=a.meta_lr,
        lr_schedule=a.lr_schedule,
        min_lr_ratio=a.min_lr_ratio,
        max_steps=tr.max_steps,
        grad_clip=tr.grad_clip,
        log_every_n_steps=tr.log_every_n_steps,
        inner_lr=a.inner_lr,
        train_inner_steps=a.inner_steps,
        val_steps=tuple(sorted({0, 1, a.inner_steps, 10})),
    )


def validation_tasks(cfg: DistMetaConfig) -> TaskBatch:
    """A fixed held-out set (its own stream), the same at every validation and across resumes."""
    return family(cfg).sample(cfg.seed, VALIDATION, 0, range(cfg.trainer.val_tasks))
