"""Load a YAML config plus ``key=value`` overrides into a typed, validated :class:`DistMetaConfig`.

This module is the only place that reads YAML or command-line overrides; everything downstream
receives the plain dataclasses (or plain arguments taken from them).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from distmeta.config.schema import DistMetaConfig
from distmeta.errors import ConfigError

ALGORITHMS = ("maml", "fomaml", "reptile", "anil", "metasgd", "protonet")
REGRESSION_FAMILIES = ("sine", "linear", "quadratic", "harmonic")
IMAGE_FAMILIES = ("glyphs", "omniglot", "miniimagenet")
FAMILIES = REGRESSION_FAMILIES + IMAGE_FAMILIES
MODELS = ("mlp", "conv4")
LR_SCHEDULES = ("constant", "cosine")
SHARD_BY = ("tasks", "family", "classes")
PRECISIONS = ("32", "bf16-mixed")
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")  # Ray placement-group strategies
HEADS = ("shared", "per_family")
FAMILY_WEIGHTING = ("count", "uniform", "weights")


def load(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> DistMetaConfig:
    """Merge schema defaults, the YAML file at ``path`` and dot-list ``overrides``; validate.

    Raises :class:`ConfigError` naming the file, key or value at fault.
    """
    base = OmegaConf.structured(DistMetaConfig)
    layers = []
    if path is not None:
        layers.append(_read_yaml(Path(path)))
    layers.append(_parse_overrides(list(overrides)))
    merged = base
    for layer in layers:
        merged = _merge(merged, layer)
    cfg = OmegaConf.to_object(merged)
    validate(cfg)
    return cfg


def from_yaml_text(text: str, overrides: Iterable[str] = ()) -> DistMetaConfig:
    """Rebuild a config saved by :func:`to_yaml` (checkpoints carry one), plus ``overrides``."""
    merged = _merge(OmegaConf.structured(DistMetaConfig), _parse_yaml(text, "the checkpoint's config"))
    cfg = OmegaConf.to_object(_merge(merged, _parse_overrides(list(overrides))))
    validate(cfg)
    return cfg


def to_yaml(cfg: DistMetaConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_flat_dict(cfg: DistMetaConfig) -> dict[str, Any]:
    """``{"algorithm.inner_lr": 0.01, ...}``: the form MLflow params take."""
    out: dict[str, Any] = {}

    def walk(prefix: str, obj: Any) -> None:
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                walk(f"{prefix}{f.name}.", getattr(obj, f.name))
        else:
            out[prefix[:-1]] = obj

    walk("", cfg)
    return out


def _read_yaml(path: Path):
    hint = "give the path to a YAML file, e.g. configs/sine_maml.yaml"
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a config file ({hint})")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} ({hint})")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"cannot read {path} as a YAML text file: {exc}") from None
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, where: str):
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {where} as YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping of config keys at the top level, found {type(data).__name__}")
    return OmegaConf.create(data)


def _parse_overrides(overrides: list[str]):
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. trainer.max_steps=100)")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse overrides {overrides}: {exc.msg}") from None


def _merge(base, layer):
    try:
        return OmegaConf.merge(base, layer)
    except ConfigKeyError as exc:
        raise ConfigError(_unknown_key_message(exc)) from None
    except ValidationError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if exc.full_key:
            raise ConfigError(f"config key '{exc.full_key}' has the wrong type: {first_line}") from None
        raise ConfigError(
            f"config has a value of the wrong type: {first_line} (a section such as "
            "'trainer' must be a mapping of its keys, not a single value)"
        ) from None
    except OmegaConfBaseException as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"invalid config at '{exc.full_key}': {first_line}") from None


def _unknown_key_message(exc: ConfigKeyError) -> str:
    full_key = exc.full_key or str(exc.key)
    parent, _, leaf = full_key.rpartition(".")
    known = _keys_under(parent)
    hint = difflib.get_close_matches(leaf, known, n=1)
    valid_full = _keys_under_full()
    msg = f"unknown config key '{full_key}'"
    if hint:
        msg += f"; did you mean '{(parent + '.' if parent else '') + hint[0]}'?"
    else:
        close = difflib.get_close_matches(full_key, valid_full, n=1, cutoff=0.6)
        msg += f"; did you mean '{close[0]}'?" if close else f"; valid keys here: {', '.join(known)}"
    return msg


def _keys_under(parent: str) -> list[str]:
    node: Any = DistMetaConfig()
    for part in filter(None, parent.split(".")):
        node = getattr(node, part, None)
        if node is None or not dataclasses.is_dataclass(node):
            return []
    return [f.name for f in dataclasses.fields(node)]


def _keys_under_full() -> list[str]:
    return list(to_flat_dict(DistMetaConfig()).keys())


def _fail(key: str, problem: str) -> None:
    raise ConfigError(f"config key '{key}': {problem}")


def validate(cfg: DistMetaConfig) -> None:
    """Checks the schema's types cannot express: choices, ranges and relations between keys."""
    a, t, c, tr = cfg.algorithm, cfg.tasks, cfg.cluster, cfg.trainer
    if a.name not in ALGORITHMS:
        _fail("algorithm.name", f"'{a.name}' is not one of {', '.join(ALGORITHMS)}")
    if a.lr_schedule not in LR_SCHEDULES:
        _fail("algorithm.lr_schedule", f"'{a.lr_schedule}' is not one of {', '.join(LR_SCHEDULES)}")
    if t.family not in FAMILIES:
        _fail("tasks.family", f"'{t.family}' is not one of {', '.join(FAMILIES)}")
    if cfg.model.name not in MODELS:
        _fail("model.name", f"'{cfg.model.name}' is not one of {', '.join(MODELS)}")
    for key, value in [
        ("algorithm.inner_lr", a.inner_lr),
        ("algorithm.meta_lr", a.meta_lr),
        ("trainer.max_steps", tr.max_steps),
        ("trainer.val_every_n_steps", tr.val_every_n_steps),
        ("trainer.val_tasks", tr.val_tasks),
        ("trainer.log_every_n_steps", tr.log_every_n_steps),
        ("algorithm.meta_batch_size", a.meta_batch_size),
        ("tasks.shots", t.shots),
        ("tasks.query", t.query),
        ("tasks.ways", t.ways),
        ("model.filters", cfg.model.filters),
        ("checkpoint.every_n_steps", cfg.checkpoint.every_n_steps),
        ("cluster.step_timeout_s", c.step_timeout_s),
        ("evaluation.num_tasks", cfg.evaluation.num_tasks),
    ]:
        if not value > 0:
            _fail(key, f"must be positive, got {value}")
    for key, value in [
        ("algorithm.inner_steps", a.inner_steps),
        ("cluster.num_shards", c.num_shards),
        ("cluster.cpus_per_shard", c.cpus_per_shard),
        ("cluster.gpus_per_shard", c.gpus_per_shard),
        ("cluster.max_actor_restarts", c.max_actor_restarts),
        ("trainer.grad_clip", tr.grad_clip),
        ("algorithm.chunk_size", a.chunk_size),
        ("algorithm.reptile.inner_batch", a.reptile.inner_batch),
        ("tasks.image_size", t.image_size),
        ("evaluation.query", cfg.evaluation.query),
    ]:
        if value < 0:
            _fail(key, f"must be zero or positive, got {value}")
    if a.name != "protonet" and a.inner_steps == 0:
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
    if not cfg.model.hidden or any(w <= 0 for w in cfg.model.hidden):
        _fail("model.hidden", f"must list positive layer widths, got {cfg.model.hidden}")
    if any(k <= 0 for k in cfg.evaluation.shots):
        _fail("evaluation.shots", f"must list positive shot counts, got {cfg.evaluation.shots}")
    if not cfg.evaluation.steps or any(s < 0 for s in cfg.evaluation.steps):
        _fail("evaluation.steps", f"must list non-negative step counts, got {cfg.evaluation.steps}")
    if c.placement_strategy not in STRATEGIES:
        _fail("cluster.placement_strategy", f"'{c.placement_strategy}' is not one of {', '.join(STRATEGIES)}")
    if c.learner_device not in ("cpu", "cuda"):
        _fail("cluster.learner_device", f"'{c.learner_device}' is not one of cpu, cuda")
    if a.batching not in ("auto", "vmap", "loop"):
        _fail("algorithm.batching", f"'{a.batching}' is not one of auto, vmap, loop")
    if tr.on_nonfinite not in ("stop", "skip"):
        _fail("trainer.on_nonfinite", f"'{tr.on_nonfinite}' is not one of stop, skip")
    if tr.precision not in PRECISIONS:
        _fail("trainer.precision", f"'{tr.precision}' is not one of {', '.join(PRECISIONS)}")
    if tr.staleness not in (0, 1):
        _fail("trainer.staleness", f"must be 0 (synchronous) or 1 (pipelined), got {tr.staleness}")
    if tr.delay_compensation < 0 or not math.isfinite(tr.delay_compensation):
        _fail("trainer.delay_compensation", f"must be a finite number >= 0, got {tr.delay_compensation}")
    if not cfg.tracking.experiment:
        _fail("tracking.experiment", "must not be empty")


def _validate_mixture(cfg: DistMetaConfig) -> None:
    t = cfg.tasks
    if t.family_weighting not in FAMILY_WEIGHTING:
        _fail("tasks.family_weighting", f"'{t.family_weighting}' is not one of {', '.join(FAMILY_WEIGHTING)}")
    heads = cfg.model.heads
    if heads not in HEADS:
        _fail("model.heads", f"'{heads}' is not one of {', '.join(HEADS)}")
    if not t.families:
        if t.shard_by == "family":
            _fail("tasks.shard_by", "'family' gives each shard whole families of a mixture: list them in tasks.families")
        if heads == "per_family":
            _fail("model.heads", "'per_family' gives each family of a mixture its own head: list them in tasks.families")
        return
    if heads == "per_family" and cfg.algorithm.name == "protonet":
        _fail("model.heads", "protonet has no head (it classifies by distances to prototypes, any N per family): use shared")
    labels = []
    regression = t.families[0].name in REGRESSION_FAMILIES
    for i, f in enumerate(t.families):
        key = f"tasks.families[{i}]"
        if f.name not in FAMILIES:
            _fail(f"{key}.name", f"'{f.name}' is not one of {', '.join(FAMILIES)}")
        if (f.name in REGRESSION_FAMILIES) != regression:
            _fail(
                f"{key}.name",
                f"'{f.name}': a mixture is all regression ({', '.join(REGRESSION_FAMILIES)}) "
                f"or all image families ({', '.join(IMAGE_FAMILIES)}), not both",
            )
        if not f.weight > 0 or not f.loss_weight > 0:
            _fail(f"{key}", f"weight and loss_weight must be positive, got {f.weight} and {f.loss_weight}")
        if f.name in ("omniglot", "miniimagenet") and not (f.root or t.root):
            _fail(f"{key}.root", f"{f.name} reads a local copy of the dataset: set its root (or tasks.root)")
        if f.ranges and f.name not in REGRESSION_FAMILIES:
            _fail(f"{key}.ranges", f"ranges are for regression families, not {f.name}")
        for field_name in ("ways", "shots", "query"):
            if getattr(f, field_name) < 0:
                _fail(f"{key}.{field_name}", f"must be zero (tasks.{field_name}) or positive, got {getattr(f, field_name)}")
        if f.ways and regression:
            _fail(f"{key}.ways", f"ways are for image families, not {f.name}")
        if f.ways == 1:
            _fail(f"{key}.ways", "an episode needs at least 2 classes, got 1")
        if heads == "per_family" and "." in (f.label or f.name):
            _fail(f"{key}.label", f"'{f.label}': a head is named after its family's label, which cannot contain '.'")
        labels.append(f.label or f.name)
    if len(set(labels)) != len(labels):
        _fail("tasks.families", f"each family needs its own label (set label to mix two of one kind), got {labels}")
    ways = {label: f.ways or t.ways for label, f in zip(labels, t.families)}
    if not regression and len(set(ways.values())) > 1 and heads == "shared" and cfg.algorithm.name != "protonet":
        listed = ", ".join(f"{label} {n}" for label, n in ways.items())
        _fail(
            "model.heads",
            f"the families have different ways ({listed}): one shared head cannot classify them all; set model.heads=per_family",
        )


def _validate_tasks(cfg: DistMetaConfig) -> None:
    """The family decides what the rest must be: image families classify, regression families regress."""
    t, a, m = cfg.tasks, cfg.algorithm, cfg.model
    if t.shard_by not in SHARD_BY:
        _fail("tasks.shard_by", f"'{t.shard_by}' is not one of {', '.join(SHARD_BY)}")
    _validate_mixture(cfg)
    regression = t.families[0].name in REGRESSION_FAMILIES if t.families else t.family in REGRESSION_FAMILIES
    if regression:
        what = "a mixture of regression families" if t.families else f"tasks.family={t.family}"
        for key, value, default in [
            ("tasks.root", t.root, ""),
            ("tasks.rotations", t.rotations, None),
            ("tasks.class_split", t.class_split, []),
        ]:
            if value != default:
                _fail(key, f"applies to image families only, not to {what} (got {value})")
        if t.shard_by == "classes":
            _fail("tasks.shard_by", f"'classes' partitions image classes; {what} has none")
        if a.name in ("protonet",):
            _fail("algorithm.name", "protonet classifies; use an image family (tasks.family=glyphs, omniglot or miniimagenet)")
        if m.name != "mlp":
            _fail("model.name", f"regression inputs are scalars: use model.name=mlp, not {m.name}")
        return
    if not t.families and t.family in ("omniglot", "miniimagenet") and not t.root:
        _fail("tasks.root", f"tasks.family={t.family} reads a local copy of the dataset: set tasks.root to its folder")
    kinds = [f.name for f in t.families] or [t.family]
    if t.class_split and ("omniglot" not in kinds or len(t.class_split) != 3 or any(n <= 0 for n in t.class_split)):
        _fail("tasks.class_split", f"only omniglot takes one, as three positive counts [train, val, test]; got {t.class_split}")
    if t.rotations and "miniimagenet" in kinds:
        _fail("tasks.rotations", "rotated photos are not new classes; rotations are for character families")
    if t.ways < 2:
        _fail("tasks.ways", f"an episode needs at least 2 classes, got {t.ways}")
    if t.shard_by == "classes" and t.class_partitions < 1:
        _fail("tasks.class_partitions", f"must be at least 1, got {t.class_partitions}")
