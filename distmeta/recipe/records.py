"""A run's records for MLflow beside its params (:mod:`distmeta.tracking.records`): the config's
description, the checkout it is in, its task families as datasets; and its default run name."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from distmeta.config import DistMetaConfig
from distmeta.config.origin import origin
from distmeta.tasks import FamilyRequest, family_kind
from distmeta.tasks.datasets.cache import manifest
from distmeta.tracking.records import DatasetRecord, RunRecords

DIGEST_CHARS = 16
SPLITS = ("train", "val", "test")


def run_name(cfg: DistMetaConfig) -> str:
    """``tracking.run_name``, or the config file's name with the algorithm when that does not say
    it (``sine_maml``, ``sine_maml-fomaml``; without a file, the family's: ``sine-maml``)."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    found = origin(cfg)
    base = found.name if found else ("mixture" if cfg.tasks.families else cfg.tasks.family)
    algorithm = cfg.algorithm.name
    return base if algorithm in base.replace("-", "_").split("_") else f"{base}-{algorithm}"


def run_records(cfg: DistMetaConfig, requests: tuple[FamilyRequest, ...]) -> RunRecords:
    found = origin(cfg)
    checkout = found.path.parent if found else Path.cwd()
    return RunRecords(found.header if found else "", checkout, tuple(_dataset(r) for r in requests))


def _dataset(r: FamilyRequest) -> DatasetRecord:
    """A family of the run as a dataset: its settings, and for a dataset on disk its folder and
    a digest of the files every split reads (names, sizes, times: as the decode cache keys them)."""
    kind = family_kind(r.kind)
    others = ("ranges", "x_range") if kind.images else ("ways", "rotations", "image_size", "channels", "class_split")
    spec = {k: v for k, v in dataclasses.asdict(r).items() if k not in (*others, "root", "cache_dir") and v != ()}
    if kind.sources is None:
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
        return DatasetRecord(r.label, digest[:DIGEST_CHARS], spec)
    files = {p for split in SPLITS for p in kind.sources(r, split)}  # under the root as given (maybe relative)
    digest = manifest(r.kind, "all", {}, Path(r.root), files)["sources"]
    return DatasetRecord(r.label, digest[:DIGEST_CHARS], spec, str(Path(r.root).expanduser().absolute()))
