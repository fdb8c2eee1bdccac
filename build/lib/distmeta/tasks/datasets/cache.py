"""A dataset split decoded once per machine: uint8 images in a ``.npy`` file that later starts
memory-map, so processes of one node (the driver, its shard actors, other runs) share one copy in
the page cache and a class-partitioned actor touches only its classes' pages.

A cache entry is a folder ``<cache_dir>/<dataset>-<split>-<settings>/`` holding ``images.npy``,
``index.json`` (class names and counts) and ``manifest.json``: the source files' names, sizes
and modification times with the decoding settings. A changed, added or removed source file, or
other settings, no longer match the manifest and the entry is decoded again. Entries are written
into a temporary folder and renamed into place under a file lock, so concurrent starts decode
once and a reader never sees half an entry.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from distmeta.tasks.datasets.decode import Allocate
from distmeta.tasks.images import ClassImages

VERSION = 1
"""Bumped when the entry format or the decoding changes, so older entries are decoded again."""


def manifest(dataset: str, split: str, settings: dict, root: Path, sources: Iterable[Path]) -> dict:
    files = sorted((str(p.relative_to(root)), p.stat()) for p in sources)
    digest = hashlib.sha256()
    for name, st in files:
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"version": VERSION, "dataset": dataset, "split": split, "settings": settings, "files": len(files),
            "sources": digest.hexdigest()}  # fmt: skip


def entry_folder(cache_dir: Path, dataset: str, split: str, settings: dict) -> Path:
    tag = "-".join(f"{k}{'_'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in sorted(settings.items()))
    return cache_dir / f"{dataset}-{split}-{tag}" if tag else cache_dir / f"{dataset}-{split}"


def cached(
    load: Callable[[Allocate], ClassImages], *, dataset: str, split: str, settings: dict, root: Path, sources: Iterable[Path],
    cache_dir: Path, log: Callable[[str], None] = lambda s: None,
) -> ClassImages:  # fmt: skip
    """The split from its cache entry when the manifest matches, else decoded by ``load`` into a
    new entry (the previous one replaced)."""
    wanted = manifest(dataset, split, settings, root, sources)
    folder = entry_folder(cache_dir, dataset, split, settings)
    found = _open(folder, wanted)
    if found is not None:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(folder.with_name(folder.name + ".lock")):
        found = _open(folder, wanted)  # another process may have decoded it meanwhile
        if found is not None:
            return found
        log(f"decoding {dataset} {split} into the cache {folder} (once; later starts map it)")
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            images = load(lambda shape: np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, shape))
            _write(tmp, images, wanted)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    opened = _open(folder, wanted)
    assert opened is not None
    return opened


def _write(tmp: Path, images: ClassImages, wanted: dict) -> None:
    data = images.images
    if not (isinstance(data, np.memmap) and Path(data.filename) == tmp / "images.npy"):
        out = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, data.shape)
        out[:] = data
        data = out
    data.flush()
    order = np.argsort(images.starts, kind="stable")  # the file holds the classes in row order
    if not np.array_equal(images.starts[order], np.concatenate([[0], np.cumsum(images.counts[order])[:-1]])):
        raise ValueError("a cache entry holds every row exactly once, classes one after another")
    index = {"names": list(images.names), "starts": images.starts.tolist(), "counts": images.counts.tolist()}
    (tmp / "index.json").write_text(json.dumps(index))
    (tmp / "manifest.json").write_text(json.dumps(wanted, indent=1))  # last: it marks the entry complete


def _open(folder: Path, wanted: dict) -> ClassImages | None:
    try:
        if json.loads((folder / "manifest.json").read_text()) != wanted:
            return None
        index = json.loads((folder / "index.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    return ClassImages(images, np.asarray(index["starts"]), np.asarray(index["counts"]), tuple(index["names"]))


@contextmanager
def _locked(path: Path):
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
