"""``Recipe.from_config(cfg)``: every part of a run, built once from the config.

The recipe is the only reader of the config besides ``distmeta.config``: ``distmeta train``,
``distmeta eval`` and every bench mode take what they need from it (plain objects and settings),
and the core never sees the config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import nn

from distmeta import algorithms
from distmeta.algorithms import Algorithm
from distmeta.algorithms.adapted import serves
from distmeta.config import DistMetaConfig, from_yaml_text, to_yaml
from distmeta.errors import UserError
from distmeta.learner.settings import LearnerSettings
from distmeta.models import ModelSpec, model_kind
from distmeta.recipe import families as fam
from distmeta.recipe.params import applicable
from distmeta.recipe.records import run_records
from distmeta.recipe.run import RunSettings, check_resumable
from distmeta.recipe.trainer import lightning_trainer
from distmeta.runtime import ray_session, session
from distmeta.shard.actors import ActorResources
from distmeta.shard.allreduce_group import AllReduceShardGroup
from distmeta.shard.group import LocalShardGroup, ShardGroup
from distmeta.shard.ray_group import RayShardGroup
from distmeta.shard.spec import ReplicaSpec, WorkerSpec
from distmeta.tasks import EVALUATION, FamilyRequest, TaskFamily, family_kind
from distmeta.tasks.mixture import Mixture, unit_owners
from distmeta.tasks.sharding import Planner
from distmeta.tracking.records import RunRecords

if TYPE_CHECKING:
    from distmeta.tracking.adaptive import Served


@dataclass(frozen=True)
class EvalPlan:
    """The meta-test protocol of one family: support sizes, step counts, query size."""

    shots: tuple[int, ...]
    steps: tuple[int, ...]
    query: int


class Recipe:
    """Build with :meth:`from_config`. Parts that load data (training units, validation and test
    families) are built on first use and kept."""

    def __init__(self, cfg: DistMetaConfig):
        self.cfg = cfg
        self.requests: tuple[FamilyRequest, ...] = fam.requests(cfg)
        self.loss = family_kind(self.requests[0].kind).loss
        self.images = family_kind(self.requests[0].kind).images
        stratified = self.cfg.tasks.family_sampling == "stratified"
        self.mixture = Mixture(tuple(r.label for r in self.requests), tuple(self._weights()), stratified)
        self.algorithm: Algorithm = self._algorithm()
        self.model_spec: ModelSpec = self._model_spec()
        self.shard_device = "cuda" if cfg.cluster.gpus_per_shard > 0 else "cpu"
        self.batching = self.batching_on(self.shard_device)
        self.partitions = cfg.tasks.class_partitions if cfg.tasks.shard_by == "classes" else 1
        self.run = RunSettings.of(cfg)

    @classmethod
    def from_config(cls, cfg: DistMetaConfig) -> Recipe:
        return cls(cfg)

    # -- what the run is ----------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.cfg.seed

    @property
    def config_yaml(self) -> str:
        return to_yaml(self.cfg)

    def params(self) -> dict:
        """The flattened config as MLflow params, the keys that apply to this run only."""
        return applicable(self.cfg, tuple(family_kind(r.kind) for r in self.requests), self.algorithm.adapts)

    def records(self) -> RunRecords:
        """The config's description and checkout, the families as datasets (:mod:`distmeta.recipe.records`)."""
        return run_records(self.cfg, self.requests)

    def served(self) -> Served | None:
        """The adaptive model's parts (:mod:`distmeta.tracking.adaptive`), its input example one task
        of the first family's test split at its smallest K; None where it cannot be built: an
        algorithm without ``query_outputs``, or per-family heads or networks (which would serve?)."""
        from distmeta.tracking.adaptive import Served

        if not serves(type(self.algorithm)) or self.cfg.model.heads == "per_family" or self.cfg.model.share == "none":
            return None
        family = self.test_families[0]
        plan = self.evaluation_plan(family.name)
        query = 1 if self.images else min(plan.query, 5)  # MLflow stores the example as JSON
        task = family.sample(self.run.evaluation_seed, EVALUATION, 0, range(1), shots=min(plan.shots), query=query)
        example = {"support_x": task.support_x, "support_y": task.support_y, "query_x": task.query_x}
        steps = self.cfg.algorithm.inner_steps if self.algorithm.adapts else 0
        return Served(self.algorithm, steps, {k: v.numpy() for k, v in example.items()}, self.cfg.tracking.register_model)

    def check_resumable(self, saved_config_yaml: str, path) -> None:
        """Refuse to continue a checkpoint written with another model or task stream."""
        check_resumable(self.cfg, from_yaml_text(saved_config_yaml), path)

    def _weights(self) -> list[float]:
        return [float(f.weight) for f in self.cfg.tasks.families] or [1.0]

    def _algorithm(self) -> Algorithm:
        a = self.cfg.algorithm
        own = getattr(a, algorithms.algorithm_kind(a.name).settings, None)  # its own section (algorithm.reptile.*)
        extra = dataclasses.asdict(own) if dataclasses.is_dataclass(own) else {}
        ways = max(r.ways for r in self.requests)  # ProtoNets: prototypes for the largest N, absent classes masked
        return algorithms.build(
            a.name, loss=self.loss, steps=a.inner_steps, lr=a.inner_lr, first_order=a.first_order,
            checkpoint=a.checkpoint_inner, inner_grad_clip=a.inner_grad_clip, ways=ways, **extra,
        )  # fmt: skip

    def _norm(self) -> str:
        """``model.norm`` resolved: ``auto`` keeps running estimates for methods without an inner
        loop (their test queries should not be normalised by each other) and batch statistics for
        the MAML family (an adapted network then carries no state besides its weights)."""
        norm = self.cfg.model.norm
        return ("batch" if self.algorithm.adapts else "running") if norm == "auto" else norm

    def _dropblock(self) -> float:
        """``model.dropblock`` resolved: unset drops 0.1 (MetaOptNet's rate) for methods without
        an inner loop and nothing for the MAML family (see the field's documentation)."""
        rate = self.cfg.model.dropblock
        if rate is None:
            rate = 0.1 if not self.algorithm.adapts and model_kind(self.cfg.model.name).drops else 0.0
        return rate

    def _model_spec(self) -> ModelSpec:
        m, rs = self.cfg.model, self.requests
        kind = family_kind(rs[0].kind)
        if self.images:
            shape: tuple[int, ...] = (rs[0].channels, rs[0].image_size, rs[0].image_size)
            outputs = [r.ways if self.algorithm.uses_head else 0 for r in rs]  # metric methods embed
        elif kind.environments:  # a policy: observations in, actions out
            shape, outputs = (kind.observations,), [kind.actions] * len(rs)
        else:
            shape, outputs = (1,), [1] * len(rs)
        per_family = m.heads == "per_family" or m.share == "none"
        heads = tuple((r.label, n) for r, n in zip(rs, outputs)) if per_family else ()
        for label, _ in heads:  # heads and networks are named after the labels, in an nn.ModuleDict
            if hasattr(nn.ModuleDict, label):
                raise UserError(
                    f"tasks.families label '{label}' is a name torch's nn.ModuleDict uses itself; with "
                    "per-family heads or networks choose another label"
                )
        return ModelSpec(
            m.name,
            shape,
            outputs[0],
            hidden=tuple(m.hidden),
            filters=m.filters,
            widths=tuple(m.widths),
            heads=heads,
            share=m.share,
            norm=self._norm(),
            dropblock=self._dropblock(),
            dropblock_size=m.dropblock_size,
        )

    def batching_on(self, device: str) -> str:
        """``algorithm.batching`` resolved: ``auto`` loops over image tasks on CPU (vmapped
        convolutions are slower than a loop there) and vmaps otherwise."""
        choice = self.cfg.algorithm.batching
        if choice == "auto":
            choice = "loop" if self.images and device == "cpu" else "vmap"
        return choice

    def model(self) -> nn.Module:
        """A fresh meta-model (the algorithm's view of the network), initialised from the seed."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            return self.algorithm.meta_model(self.model_spec.build())

    def runtime(self):
        """The context the run's shards live in, the learner at one thread (:func:`distmeta.runtime.session`)."""
        return session(self.run.address, self.run.num_shards, self.run.dashboard)

    def ray_session(self):
        """Ray for the run's shards, if it has any (:func:`distmeta.runtime.ray_session`)."""
        return ray_session(self.run.address, self.run.num_shards, self.run.dashboard)

    def trainer(self, logger, run_dir, callbacks=()):
        """The Lightning ``Trainer`` (checkpoints into ``run_dir``, the best by the validation score)."""
        settings = self.learner_settings
        return lightning_trainer(self.cfg, logger, run_dir, settings.val_monitor, settings.algorithm.score_name, callbacks)

    # -- data ------------------------------------------------------------------------------------
    def families(self, split: str = "train") -> tuple[TaskFamily, ...]:
        """Every family of ``split``, without data."""
        return tuple(fam.build(r, split) for r in self.requests)

    @cached_property
    def training_units(self) -> tuple:
        """Training images per data unit, loaded and checked once (empty for regression)."""
        return fam.training_units(self.requests, self.partitions)

    @cached_property
    def validation_families(self) -> tuple[TaskFamily, ...]:
        """The validation split's families with their images (their tasks: own stream, step 0)."""
        return fam.with_data(self.requests, "val", "validation split")

    @cached_property
    def test_families(self) -> tuple[TaskFamily, ...]:
        """The test split's families with their images, each checked at every K it is evaluated at."""
        out = fam.with_data(self.requests, "test")
        for family in out:
            plan = self.evaluation_plan(family.name)
            for k in plan.shots:
                fam.checked(family, f"test split, evaluation.shots={k}, evaluation.query={plan.query}", shots=k, query=plan.query)
        return out

    def evaluation_plan(self, label: str) -> EvalPlan:
        """The protocol of family ``label``, the config's empty/zero defaults resolved from the
        family (regression K = 5, 10, 20 on 100 query points; images their training shots on 15
        per class); methods without an inner loop at step 0 only."""
        e = self.cfg.evaluation
        family = next(f for f in self.families("test") if f.name == label)
        shots, query = family.evaluation_defaults()
        steps = tuple(e.steps) if self.algorithm.adapts else (0,)
        return EvalPlan(tuple(e.shots) or shots, steps, e.query or query)

    # -- the shard group and the learner ------------------------------------------------------
    def worker_spec(self, device: str = "cpu") -> WorkerSpec:
        a, c = self.cfg.algorithm, self.cfg.cluster
        return WorkerSpec(
            seed=self.cfg.seed, families=self.families("train"), mixture=self.mixture, model=self.model_spec,
            algorithm=self.algorithm, threads=max(1, int(c.cpus_per_shard)) if c.num_shards > 0 else 0,  # 0: the process's
            device=device, compile=a.compile, chunk_size=a.chunk_size, precision=self.cfg.trainer.precision,
            batching=self.batching_on(device), partitions=self.partitions, retain_freed_memory=c.retain_freed_memory,
        )  # fmt: skip

    def shard_group(self) -> ShardGroup:
        """In-process group for ``num_shards=0``, else one Ray actor per shard (Ray must be
        initialised); the training units reach the actors through the object store, each actor
        getting the units it owns."""
        c, units = self.cfg.cluster, self.training_units
        if c.num_shards == 0:
            return LocalShardGroup(self.worker_spec(), units)
        if units and self.cfg.tasks.shard_by in ("family", "classes"):  # each actor gets only the units it owns
            owners = unit_owners(len(units), c.num_shards)
            shard_data = [tuple(d if k in owners[u] else None for u, d in enumerate(units)) for k in range(c.num_shards)]
        else:
            shard_data = [units] * c.num_shards
        resources = ActorResources(c.cpus_per_shard, c.gpus_per_shard, c.max_actor_restarts, c.placement_strategy)
        spec = self.worker_spec(self.shard_device)
        if c.aggregation == "allreduce":
            return AllReduceShardGroup(
                replace(spec, replica=self._replica_spec()), c.num_shards, resources, c.step_timeout_s, shard_data,
                calls=c.replica_calls,
            )  # fmt: skip
        return RayShardGroup(
            spec, c.num_shards, resources, timeout_s=c.step_timeout_s, shard_data=shard_data, local_channel=c.local_channel
        )

    def _replica_spec(self) -> ReplicaSpec:
        """What every replica applies in all-reduce mode: the learner's own update settings."""
        ls = self.learner_settings
        return ReplicaSpec(
            meta_lr=ls.meta_lr, grad_clip=ls.grad_clip, weighting=ls.family_weighting, loss_weights=ls.loss_weights,
            on_nonfinite=ls.on_nonfinite, timeout_s=self.cfg.cluster.step_timeout_s,
            collective=self.cfg.cluster.collective, own_gpu=self.cfg.cluster.gpus_per_shard >= 1,
        )  # fmt: skip

    @cached_property
    def learner_settings(self) -> LearnerSettings:
        a, tr, t, algo = self.cfg.algorithm, self.cfg.trainer, self.cfg.tasks, self.algorithm
        env = family_kind(self.requests[0].kind).environments
        probe = () if env else (10,)  # a meta-RL adaptation step collects fresh rollouts: no 10-step probe
        planner = Planner(
            a.meta_batch_size, self.cfg.cluster.num_shards, t.shard_by, self.mixture, self.cfg.seed, self.partitions
        )
        return LearnerSettings(
            planner=planner, meta_lr=a.meta_lr, lr_schedule=a.lr_schedule, min_lr_ratio=a.min_lr_ratio,
            max_steps=tr.max_steps, grad_clip=tr.grad_clip, log_every_n_steps=tr.log_every_n_steps, algorithm=algo,
            train_inner_steps=a.inner_steps if algo.adapts else 0,
            val_steps=tuple(sorted({0, 1, a.inner_steps, *probe})) if algo.adapts else (0,),
            seed=self.cfg.seed, val_tasks=tr.val_tasks, family_weighting=t.family_weighting,
            loss_weights=tuple((f.label or f.name, float(f.loss_weight)) for f in t.families),
            on_nonfinite=tr.on_nonfinite, staleness=tr.staleness, delay_compensation=tr.delay_compensation,
            sync_every=(tr.val_every_n_steps, self.cfg.checkpoint.every_n_steps), mixture=self.run.mixture,
            system_metrics_s=self.cfg.tracking.system_metrics_s,
            env_steps_per_task=self.families()[0].env_steps(algo.inner.steps) if env else 0,
        )  # fmt: skip
