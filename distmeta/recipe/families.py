"""The run's task families as the config states them, resolved into registry requests, and their
data loaded and checked once."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from functools import partial
from pathlib import Path

from distmeta.config import DistMetaConfig
from distmeta.errors import UserError
from distmeta.tasks import ClassImages, FamilyRequest, TaskFamily, datasets, family_kind
from distmeta.tasks.datasets.decode import in_memory

CACHE_FOLDER = ".distmeta_cache"
"""Where decoded splits are cached under a dataset's root, unless ``tasks.cache_dir`` says otherwise."""

log = logging.getLogger(__name__)


def requests(cfg: DistMetaConfig) -> tuple[FamilyRequest, ...]:
    """One request per family (a single ``tasks.family`` is one), each setting resolved: a
    family's 0 or empty means ``tasks.*``; images share one side and channel count."""
    t = cfg.tasks
    listed = t.families or [None]
    kinds = [family_kind(f.name if f else t.family) for f in listed]
    images = kinds[0].images
    size = (t.image_size or max(k.image_size for k in kinds)) if images else 0
    channels = max(k.channels for k in kinds) if images else 0
    out = []
    for f, kind in zip(listed, kinds):
        if f is None:  # the single family: the sine's ranges are tasks.amplitude / tasks.phase
            ranges = (("amplitude", tuple(t.amplitude)), ("phase", tuple(t.phase))) if kind.name == "sine" else ()
            label, root, ways, shots, query, noise = kind.name, t.root, t.ways, t.shots, t.query, t.noise
        else:
            ranges = tuple((k, tuple(v)) for k, v in f.ranges.items())
            label, root, ways, shots, query, noise = (
                f.label or f.name,
                f.root or t.root,
                f.ways or t.ways,
                f.shots or t.shots,
                f.query or t.query,
                t.noise if f.noise is None else f.noise,
            )
        rotations = kind.rotations if t.rotations is None else bool(t.rotations)
        out.append(
            FamilyRequest(
                kind.name,
                label,
                shots,
                query,
                ways,
                ranges,
                tuple(t.x_range),
                float(noise),
                root,
                rotations,
                size,
                channels,
                tuple(t.class_split),
                _cache_dir(t, root) if kind.sources is not None else "",
            )
        )
    return tuple(out)


def _cache_dir(t, root: str) -> str:
    if not t.cache:
        return ""
    return str(Path(t.cache_dir).expanduser().absolute() if t.cache_dir else Path(root).expanduser().absolute() / CACHE_FOLDER)


def _writable(cache_dir: Path) -> bool:
    """Whether the cache folder exists or can be made, and can be written; if not, the split is
    decoded at every start (a read-only dataset folder is common), and the log says how to cache."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if os.access(cache_dir, os.W_OK):
            return True
    except OSError:
        pass
    log.warning("cannot write the dataset cache %s: decoding without it (set tasks.cache_dir to a writable folder)", cache_dir)
    return False


def build(request: FamilyRequest, split: str) -> TaskFamily:
    """The family of ``split``, without its data."""
    try:
        return family_kind(request.kind).build(request, split)
    except ValueError as exc:
        raise UserError(f"tasks.families ({request.label}): {exc}") from None


def load(request: FamilyRequest, split: str) -> ClassImages | None:
    """The images of one family's ``split`` (None for computed families), in the run's one side
    and channel count."""
    kind = family_kind(request.kind)
    if kind.load is None:
        return None
    if not request.cache_dir or kind.sources is None or not _writable(Path(request.cache_dir)):
        return kind.load(request, split, in_memory).with_channels(request.channels)
    return from_cache(request, split).with_channels(request.channels)


def from_cache(request: FamilyRequest, split: str) -> ClassImages:
    """The split mapped from its cache entry, decoded into it first if needed. The images carry
    this call as their ``rebuild``: an actor on a node whose disk lacks the entry decodes its own."""
    kind = family_kind(request.kind)
    settings = {"size": request.image_size, **({"split": list(request.class_split)} if kind.class_split else {})}
    images = datasets.cached(
        lambda allocate: kind.load(request, split, allocate), dataset=kind.name, split=split, settings=settings,
        root=Path(request.root), sources=kind.sources(request, split), cache_dir=Path(request.cache_dir), log=log.info,
    )  # fmt: skip
    return replace(images, rebuild=partial(from_cache, request, split))


def checked(family: TaskFamily, what: str, shots: int | None = None, query: int | None = None) -> TaskFamily:
    """``family``, after checking its tasks can be drawn; a :class:`UserError` naming the keys if not."""
    try:
        family.check(shots=shots, query=query, what=what)
    except ValueError as exc:
        raise UserError(f"{exc}; adjust tasks.ways, tasks.shots, tasks.query or evaluation.shots/query") from None
    return family


def with_data(requests_: tuple[FamilyRequest, ...], split: str, what: str = "") -> tuple[TaskFamily, ...]:
    """Every family of ``split`` with its images attached; checked as ``what`` when given."""
    out = tuple(build(r, split).with_data(load(r, split)) for r in requests_)
    return tuple(checked(f, what) for f in out) if what else out


def training_units(requests_: tuple[FamilyRequest, ...], partitions: int) -> tuple:
    """The training images per data unit (a family, or one class part of a family: unit
    ``f * partitions + p``), loaded once and checked against the episodes; empty for regression."""
    train = tuple(load(r, "train") for r in requests_)
    for r, images in zip(requests_, train):
        if images is not None:
            checked(build(r, "train").with_data(images), "training split")
    if all(d is None for d in train):
        return ()
    units = tuple(
        None if d is None else d.partition(p, partitions) if partitions > 1 else d for d in train for p in range(partitions)
    )
    for u, part in enumerate(units):
        if partitions > 1 and part is not None:
            checked(
                build(requests_[u // partitions], "train").with_data(part),
                f"class partition {u % partitions} of the training split",
            )
    return units
