"""The MLflow params of a run: the flattened config, less the keys that do nothing in it (the
full resolved config is the run's ``config/config.yaml`` artifact either way)."""

from __future__ import annotations

import dataclasses

from distmeta.algorithms import algorithm_kind
from distmeta.config import DistMetaConfig, to_flat_dict
from distmeta.tasks import FamilyKind

IMAGE_KEYS = ("tasks.ways", "tasks.image_size", "tasks.rotations")
"""Image families' own keys; the dataset ones (root, cache, class split) follow what each kind reads."""
MODEL_KEYS = {
    "mlp": ("model.hidden",),
    "gaussian_mlp": ("model.hidden",),
    "conv4": ("model.filters", "model.norm"),
    "resnet12": ("model.widths", "model.norm", "model.dropblock", "model.dropblock_size"),
    "wrn28_10": ("model.widths", "model.norm"),
}
"""Each built-in network's own keys; the others' do not apply to it."""


def applicable(cfg: DistMetaConfig, kinds: tuple[FamilyKind, ...], adapts: bool) -> dict:
    """``cfg`` flattened, without what does not apply to it: another network's or algorithm's
    settings, image settings on regression (and regression ranges on images), the single family's
    keys in a mixture (and a mixture's without one), an inner loop's without one, options of a
    mode not chosen (all-reduce's collective, pipelining's compensation, the cosine floor)."""
    a, t, c = cfg.algorithm, cfg.tasks, cfg.cluster
    images, mixture = kinds[0].images, bool(t.families)
    known = cfg.model.name in MODEL_KEYS  # a registered network of a user's may read any of model.*
    own = set(MODEL_KEYS.get(cfg.model.name, ()))
    own_section = algorithm_kind(a.name).settings
    sections = [f.name for f in dataclasses.fields(a) if dataclasses.is_dataclass(getattr(a, f.name)) and f.name != own_section]
    rules = {
        tuple(k for keys in MODEL_KEYS.values() for k in keys if k not in own): known,
        ("tasks.x_range",): images or kinds[0].environments,
        ("tasks.amplitude", "tasks.phase"): mixture or t.family != "sine",
        IMAGE_KEYS: not images,
        ("tasks.root",): not any(k.needs_root for k in kinds),
        ("tasks.cache", "tasks.cache_dir"): not any(k.sources is not None for k in kinds),
        ("tasks.rotations",): not any(k.rotatable for k in kinds),
        ("tasks.class_split",): not any(k.class_split for k in kinds),
        ("tasks.class_partitions",): t.shard_by != "classes",
        ("tasks.family",): mixture,
        ("tasks.families", "tasks.family_weighting", "tasks.family_sampling", "model.heads", "model.share"): not mixture,
        ("algorithm.inner_lr", "algorithm.inner_steps", "algorithm.first_order", "algorithm.checkpoint_inner"): not adapts,
        ("algorithm.min_lr_ratio",): a.lr_schedule == "constant",
        ("cluster.collective", "cluster.replica_calls"): c.aggregation != "allreduce",
        ("trainer.delay_compensation",): not cfg.trainer.staleness,
        ("cluster.dashboard",): bool(c.address) or c.num_shards == 0,
    }
    dropped = {k for keys, off in rules.items() if off for k in keys}
    sections = tuple(f"algorithm.{s}." for s in sections)  # another algorithm's own section
    return {k: v for k, v in to_flat_dict(cfg).items() if k not in dropped and not k.startswith(sections)}
