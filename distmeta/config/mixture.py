"""The rules of a mixture (``tasks.families``): each entry's settings against its kind, and what
the families must share."""

from __future__ import annotations

from distmeta.algorithms import algorithm_kind
from distmeta.config.checks import choice, fail
from distmeta.config.schema import DistMetaConfig
from distmeta.models import HEADS, SHARES, model_kind
from distmeta.shard.weighting import WEIGHTINGS
from distmeta.tasks import FAMILIES, family_kind
from distmeta.tasks.mixture import SAMPLINGS


def _kinds_with_loss(loss: str) -> str:
    return ", ".join(name for name, kind in FAMILIES.items() if kind.loss == loss)


def validate_mixture(cfg: DistMetaConfig) -> None:
    t, heads, share = cfg.tasks, cfg.model.heads, cfg.model.share
    choice("tasks.family_weighting", t.family_weighting, WEIGHTINGS)
    choice("tasks.family_sampling", t.family_sampling, SAMPLINGS)
    choice("model.heads", heads, HEADS)
    choice("model.share", share, SHARES)
    if not t.families:
        if t.shard_by == "family":
            fail("tasks.shard_by", "'family' gives each shard whole families of a mixture: list them in tasks.families")
        if heads == "per_family":
            fail("model.heads", "'per_family' gives each family of a mixture its own head: list them in tasks.families")
        if share == "none":
            fail("model.share", "'none' gives each family of a mixture its own network: list them in tasks.families")
        return
    algo = algorithm_kind(cfg.algorithm.name).cls
    if algo.one_network and (heads == "per_family" or share == "none"):
        fail("model.heads" if heads == "per_family" else "model.share", f"{cfg.algorithm.name} modulates one network: use model.heads=shared and model.share=all")  # fmt: skip
    if share == "none":
        _validate_separate(cfg, algo)
    if heads == "per_family" and not algo.uses_head:
        fail(
            "model.heads",
            f"{cfg.algorithm.name} has no head (it classifies by distances to prototypes, any N per family): use shared",
        )
    for i, f in enumerate(t.families):
        _validate_family(cfg, i, f)
        if t.family_sampling == "stratified" and f.weight != 1.0:
            fail(f"tasks.families[{i}].weight", "tasks.family_sampling=stratified takes every family alike: weights do not apply")
    labels = [f.label or f.name for f in t.families]
    if len(set(labels)) != len(labels):
        fail("tasks.families", f"each family needs its own label (set label to mix two of one kind), got {labels}")
    ways = {label: f.ways or t.ways for label, f in zip(labels, t.families)}
    one_head = heads == "shared" and share == "all" and algo.uses_head
    if family_kind(t.families[0].name).images and len(set(ways.values())) > 1 and one_head:
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
    if (cfg.model.heads == "per_family" or cfg.model.share == "none") and "." in (f.label or f.name):
        fail(f"{key}.label", f"'{f.label}': a head or network is named after its family's label, which cannot contain '.'")


def _validate_separate(cfg: DistMetaConfig, algo) -> None:
    """``model.share: none``: a whole network per family, whose views are the networks."""
    m = cfg.model
    if m.heads == "per_family":
        fail("model.heads", "with model.share=none each family's network has a head of its own already: use shared")
    running = m.norm == "running" or (m.norm == "auto" and not algo.adapts)
    if running and model_kind(m.name).normalised:
        fail("model.share", f"'none' with running-statistics norms (model.norm={m.norm} with {cfg.algorithm.name}) is not supported: use model.norm=batch")  # fmt: skip
