"""The settings of a run around the training itself (tracking, checkpoints, runtime), as plain
values, and the resume check."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from distmeta.config import DistMetaConfig
from distmeta.errors import UserError
from distmeta.recipe.records import run_name


@dataclass(frozen=True)
class RunSettings:
    tracking_uri: str
    """As configured (empty: the default local store); ``tracking.store.resolve_uri`` resolves it."""
    experiment: str
    run_name: str
    flush_timeout_s: float
    checkpoint_dir: Path
    learner_device: str
    address: str
    num_shards: int
    cpus_per_shard: float
    evaluation_seed: int
    evaluation_tasks: int
    mixture: bool
    """Several families: evaluation reports are combined into one table."""
    dashboard: bool = False

    @classmethod
    def of(cls, cfg: DistMetaConfig) -> RunSettings:
        t, c = cfg.tracking, cfg.cluster
        return cls(t.uri, t.experiment, run_name(cfg), t.flush_timeout_s, Path(cfg.checkpoint.dir), c.learner_device, c.address,
                   c.num_shards, c.cpus_per_shard, cfg.evaluation.seed, cfg.evaluation.num_tasks, bool(cfg.tasks.families),
                   c.dashboard)  # fmt: skip


RESUME_KEYS = ("seed", "model", "tasks", "algorithm.name", "algorithm.meta_batch_size")
"""What a run must keep to continue: its model and its task stream."""


def check_resumable(cfg: DistMetaConfig, saved: DistMetaConfig, path: Path) -> None:
    """A run continues only with the model and task stream it started with."""
    for section in RESUME_KEYS:
        now, then = _get(cfg, section), _get(saved, section)
        if now != then:
            raise UserError(
                f"checkpoint {path} was written by a run with {section}={_show(then)}, this config has "
                f"{section}={_show(now)}; resume with the original config or start a new run"
            )


def _get(cfg, dotted: str):
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _show(value) -> str:
    return str(dataclasses.asdict(value)) if dataclasses.is_dataclass(value) else str(value)
