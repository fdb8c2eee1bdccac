"""The rules of a mixture (``tasks.families``): each entry's settings against its kind, and what
the families must share."""

from __future__ import annotations

from distmeta.algorithms import algorithm_kind
from distmeta.config.checks import choice, fail
from distmeta.config.schema import DistMetaConfig
from distmeta.models import HEADS
from distmeta.shard.aggregate import WEIGHTINGS
from distmeta.tasks import FAMILIES, family_kind


def _kinds_with_loss(loss: str) -> str:
    return ", ".join(name for name, kind in FAMILIES.items() if kind.loss == loss)


def validate_mixture(cfg: DistMetaConfig) -> None:
    t, heads = cfg.tasks, cfg.model.heads
    choice("tasks.family_weighting", t.family_weighting, WEIGHTINGS)
    choice("model.heads", heads, HEADS)
    if not t.families:
        if t.shard_by == "family":
            fail("tasks.shard_by", "'family' gives each shard whole families of a mixture: list them in tasks.families")
        if heads == "per_family":
            fail("model.heads", "'per_family' gives each family of a mixture its own head: list them in tasks.families")
        return
    algo = algorithm_kind(cfg.algorithm.name).cls
    if heads == "per_family" and not algo.uses_head:
        fail(
            "model.heads",
            f"{cfg.algorithm.name} has no head (it classifies by distances to prototypes, any N per family): use shared",
        )
    for i, f in enumerate(t.families):
        _validate_family(cfg, i, f)
    labels = [f.label or f.name for f in t.families]
    if len(set(labels)) != len(labels):
        fail("tasks.families", f"each family needs its own label (set label to mix two of one kind), got {labels}")
    ways = {label: f.ways or t.ways for label, f in zip(labels, t.families)}
    if family_kind(t.families[0].name).images and len(set(ways.values())) > 1 and heads == "shared" and algo.uses_head:
        listed = ", ".join(f"{label} {n}" for label, n in ways.items())
        fail(
            "model.heads",
            f"the families have different ways ({listed}): one shared head cannot classify them all; set model.heads=per_family",
        )


def _validate_family(cfg: DistMetaConfig, i: int, f) -> None:
    t, key = cfg.tasks, f"tasks.families[{i}]"
    choice(f"{key}.name", f.name, FAMILIES)
    kind, first = family_kind(f.name), family_kind(t.families[0].name)
    if kind.loss != first.loss:
        fail(
            f"{key}.name",
            f"'{f.name}': a mixture is all regression ({_kinds_with_loss('mse')}), all image "
            f"({_kinds_with_loss('cross_entropy')}) or all environment families ({_kinds_with_loss('return')})",
        )
    if not f.weight > 0 or not f.loss_weight > 0:
        fail(f"{key}", f"weight and loss_weight must be positive, got {f.weight} and {f.loss_weight}")
    if kind.needs_root and not (f.root or t.root):
        fail(f"{key}.root", f"{f.name} reads a local copy of the dataset: set its root (or tasks.root)")
    if f.ranges and not kind.params:
        fail(f"{key}.ranges", f"ranges are for regression families, not {f.name}")
    if f.noise is not None and (not kind.params or not f.noise >= 0):
        problem = f"is for regression families, not {f.name}" if not kind.params else f"must be 0 or more, got {f.noise}"
        fail(f"{key}.noise", f"the targets' noise standard deviation {problem}")
    for field_name in ("ways", "shots", "query"):
        if getattr(f, field_name) < 0:
            fail(f"{key}.{field_name}", f"must be zero (tasks.{field_name}) or positive, got {getattr(f, field_name)}")
    if f.ways and not kind.images:
        fail(f"{key}.ways", f"ways are for image families, not {f.name}")
    if f.ways == 1:
        fail(f"{key}.ways", "an episode needs at least 2 classes, got 1")
    if cfg.model.heads == "per_family" and "." in (f.label or f.name):
        fail(f"{key}.label", f"'{f.label}': a head is named after its family's label, which cannot contain '.'")
