"""The dataset cache measured: ``python -m distmeta.bench.cache [--images 20000] [--actors 2]``.

Writes a synthetic CUB-200-2011 tree (JPEGs in ``images/<class>/``, 100x100, resized to 84 on
loading) of ``--images`` images, then

- times the first start (decoding into the cache) against the second (mapping it), through the
  loader and cache a run uses;
- sends the mapped training split to ``--actors`` Ray actors on this node, as a run's shards get
  it, has each read every image, and reports each one's resident memory: ``rss`` (all pages it
  maps, shared ones included), ``pss`` (shared pages divided among the processes that map them)
  and ``rss_file``/``rss_anon``; then the same with the cache off (the images through Ray's object
  store), for comparison.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from distmeta.bench.synthetic import write_photo_classes
from distmeta.tasks import ClassImages
from distmeta.tasks.datasets import cached, cub_sources, load_cub
from distmeta.tasks.datasets.cub import split_classes


def _memory_mib(pid: int) -> dict[str, float]:
    """From ``/proc/<pid>/smaps_rollup`` and ``status`` (Linux)."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key.lower()] = int(rest.split()[0]) / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssFile", "RssAnon", "RssShmem"):
            out[key.lower().replace("rss", "rss_")] = int(rest.split()[0]) / 1024
    return out


class _Reader:
    """What a shard does with its images: hold them and read episodes from them."""

    def __init__(self, images: ClassImages):
        self.images = images

    def touch(self) -> dict:
        import os

        total = int(np.asarray(self.images.images[:, :, ::4, ::4]).sum(dtype=np.int64))  # reads every page
        return {"pid": os.getpid(), "mapped": type(self.images.images).__name__, "checksum": total}


def _actors(images: ClassImages, count: int) -> list[dict]:
    import ray

    reader = ray.remote(num_cpus=0)(_Reader)
    ref = ray.put(images)
    actors = [reader.remote(ref) for _ in range(count)]
    infos = ray.get([a.touch.remote() for a in actors], timeout=600)  # a stuck actor fails the bench, not hangs it
    rows = [{**info, **_memory_mib(info["pid"])} for info in infos]
    for a in actors:
        ray.kill(a)
    return rows


def run(images: int, actors: int, root: Path) -> dict:
    per_class = max(1, images // 100)
    write_photo_classes(root, 100, lambda c: per_class)
    cache_dir = root / ".distmeta_cache"

    def start() -> tuple[ClassImages, float]:
        t = time.perf_counter()
        out = cached(
            lambda allocate: load_cub(root, "train", allocate=allocate), dataset="cub", split="train", settings={"size": 84},
            root=root, sources=cub_sources(root), cache_dir=cache_dir,
        )  # fmt: skip
        return out, time.perf_counter() - t

    _, first = start()
    mapped, second = start()
    report = {
        "images": 100 * per_class, "train_images": len(split_classes(list(range(100)), "train")) * per_class,
        "train_mib": mapped.images.nbytes / 2**20, "first_start_s": first, "second_start_s": second,
    }  # fmt: skip
    import ray

    ray.init(num_cpus=max(2, actors), include_dashboard=False, log_to_driver=False)
    try:
        report["mapped"] = _actors(mapped, actors)
        in_memory = ClassImages(np.array(mapped.images), mapped.starts, mapped.counts, mapped.names)
        report["object_store"] = _actors(in_memory, actors)
    finally:
        ray.shutdown()
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distmeta.bench.cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--actors", type=int, default=2)
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="distmeta-cache-bench-"))
    try:
        report = run(args.images, args.actors, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report))
    print(
        f"{report['images']} images ({report['train_images']} in the training split, {report['train_mib']:.0f} MiB): "
        f"first start {report['first_start_s']:.1f} s, second {report['second_start_s']:.2f} s",
        file=sys.stderr,
    )
    for how in ("mapped", "object_store"):
        for r in report[how]:
            print(f"{how:<13} actor {r['pid']}: rss {r['rss']:.0f} MiB, pss {r['pss']:.0f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
