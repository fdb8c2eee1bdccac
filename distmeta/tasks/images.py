"""Few-shot image classification: the class-image store every image family loads into, and the
N-way K-shot episode sampler over it.

A family's split is one :class:`ClassImages` (uint8 images stored class after class, ragged)
built once in the driver. Shard actors receive it through Ray: images in memory by the object
store (read there without copying), a memory-mapped dataset cache as its path (each process maps
the same file). Episodes are sampled where they are computed, from ``(seed, stream, step, index)``.
"""

from __future__ import annotations

import mmap
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from distmeta.errors import UserError
from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.seeding import task_generator

ROTATIONS = 4  # 0, 90, 180, 270 degrees


@dataclass(frozen=True, eq=False)
class ClassImages:
    """The images of a split, class by class, without padding: ``images`` is uint8
    ``[N, channels, H, W]`` (pixel 255 is full ink/brightness, a plain array or a read-only memory
    map of a cache); class ``c`` (named ``names[c]``, e.g. ``Latin/character01``) is the
    ``counts[c]`` images from row ``starts[c]``. Classes may have different numbers of images
    (tieredImageNet ~1,300, CUB ~60); a class subset (:meth:`partition`) shares ``images``."""

    images: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    names: tuple[str, ...]
    rebuild: Callable[[], ClassImages] | None = field(default=None, repr=False)
    """For a memory-mapped cache: how a process on a node whose disk lacks the file decodes that
    node's own copy (a picklable call of the loader; the rows come out in the same order)."""

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, channels, H, W], got {self.images.dtype} {self.images.shape}")
        if not len(self.names) == len(self.starts) == len(self.counts):
            raise ValueError(f"{len(self.names)} names for {len(self.starts)} starts and {len(self.counts)} counts")
        if len(self.counts) and (self.counts.min() < 0 or (self.starts + self.counts).max() > len(self.images)):
            raise ValueError(f"class rows outside the {len(self.images)} images")

    def __reduce__(self):
        # a memory-mapped cache travels as its path: the receiving process maps the same file
        # (one copy in the node's page cache) instead of unpickling a private copy of every image
        path = mapped_file(self.images)
        if path is None:
            return ClassImages, (self.images, self.starts, self.counts, self.names)
        return _mapped, (path, self.images.shape, self.starts, self.counts, self.names, self.rebuild)

    @classmethod
    def grid(cls, pixels: np.ndarray, names: Sequence[str]) -> ClassImages:
        """From a dense ``[classes, examples, channels, H, W]`` array (every class as many images)."""
        if pixels.dtype != np.uint8 or pixels.ndim != 5:
            raise ValueError(f"pixels must be uint8 [classes, examples, channels, H, W], got {pixels.dtype} {pixels.shape}")
        c, m = pixels.shape[:2]
        return cls(pixels.reshape(c * m, *pixels.shape[2:]), np.arange(c) * m, np.full(c, m), tuple(names))

    @classmethod
    def ragged(cls, images: np.ndarray, counts: Sequence[int], names: Sequence[str]) -> ClassImages:
        """From ``images`` stored class after class, ``counts[c]`` of class ``c``."""
        counts = np.asarray(counts, dtype=np.int64)
        return cls(images, np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64), counts, tuple(names))

    @property
    def pixels(self) -> np.ndarray:
        """The dense ``[classes, examples, channels, H, W]`` view, when every class holds as many
        images stored one class after the other (a grid); else a ValueError."""
        m = int(self.counts[0]) if len(self.counts) else 0
        if not (self.counts == m).all() or not np.array_equal(self.starts, self.starts[0] + np.arange(self.num_classes) * m):
            raise ValueError("these classes hold different numbers of images: no dense [classes, examples] view")
        first = int(self.starts[0]) if len(self.starts) else 0
        return self.images[first : first + self.num_classes * m].reshape(self.num_classes, m, *self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def examples(self) -> int:
        """Images of the smallest class (what every episode can count on)."""
        return int(self.counts.min()) if len(self.counts) else 0

    @property
    def shape(self) -> tuple[int, ...]:
        """``(channels, H, W)`` of every image."""
        return tuple(self.images.shape[1:])

    def rows(self, classes: np.ndarray, picks: np.ndarray) -> np.ndarray:
        """Image rows of ``picks[i, j]``, the ``j``-th pick within class ``classes[i]``."""
        return self.starts[classes][:, None] + picks

    def with_channels(self, channels: int) -> ClassImages:
        """Grey images repeated to ``channels`` (to mix with colour families); unchanged if they match."""
        have = self.images.shape[1]
        if have == channels:
            return self
        if have != 1:
            raise ValueError(f"cannot turn {have}-channel images into {channels} channels")
        return replace(self, images=np.repeat(self.images, channels, axis=1))

    def partition(self, part: int, parts: int) -> ClassImages:
        """Classes ``part, part + parts, ...``: disjoint class sets for class-partitioned shards.
        A memory-mapped cache is shared, not copied (an actor reads only its classes' pages);
        images in memory are copied out, so a shard's object holds its own classes only."""
        rows = np.arange(part, self.num_classes, parts)
        names = tuple(self.names[i] for i in rows)
        if isinstance(self.images, np.memmap):
            return replace(self, starts=self.starts[rows], counts=self.counts[rows], names=names)
        index = np.concatenate([np.arange(self.starts[c], self.starts[c] + self.counts[c]) for c in rows]) if len(rows) else []
        return ClassImages.ragged(np.ascontiguousarray(self.images[index]), self.counts[rows], names)


def mapped_file(images: np.ndarray) -> str | None:
    """The ``.npy`` file ``images`` maps as a whole (``np.load(..., mmap_mode="r")``), else None."""
    if isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap) and images.filename:
        return str(images.filename)
    return None


def _mapped(
    path: str, shape: tuple[int, ...], starts: np.ndarray, counts: np.ndarray, names: tuple[str, ...],
    rebuild: Callable[[], ClassImages] | None = None,
) -> ClassImages:  # fmt: skip
    try:
        images = np.load(path, mmap_mode="r")
    except OSError as exc:
        if rebuild is None:
            raise UserError(
                f"the dataset cache {path} cannot be opened here ({exc.strerror or exc}): on a cluster, tasks.cache_dir "
                "must be a path every node sees, or set tasks.cache=false to ship the images through Ray's object store"
            ) from None
        images = _rebuilt(path, rebuild)
    if images.shape != tuple(shape):
        raise UserError(f"the dataset cache {path} holds images of shape {images.shape}, not {tuple(shape)}: it changed mid-run")
    return ClassImages(images, starts, counts, names, rebuild)


def _rebuilt(path: str, rebuild: Callable[[], ClassImages]) -> np.ndarray:
    """This node's own copy of a cache another node decoded (each node's disk holds its own: the
    dataset was copied to every node, not shared)."""
    try:
        return rebuild().images
    except (OSError, ValueError, UserError) as exc:
        raise UserError(
            f"the dataset cache {path} is not on this node ({socket.gethostname()}) and decoding the dataset here failed: {exc}"
        ) from None


@dataclass(frozen=True)
class EpisodeFamily:
    """N-way K-shot episodes with Q query images per class, over the classes of a :class:`ClassImages`.

    With ``rotations`` each class also appears rotated by 90, 180 and 270 degrees as three more
    classes (Omniglot training in the MAML paper); use it for the training split only. The settings
    are plain values; ``data`` (attached with :meth:`with_data` where episodes are drawn) is not
    part of the family's identity and is not compared.
    """

    name: str
    ways: int = 5
    shots: int = 1
    query: int = 15
    rotations: bool = False
    data: ClassImages | None = field(default=None, compare=False, repr=False)

    loss = "cross_entropy"
    """Classification: trained on cross-entropy, scored by accuracy."""

    def evaluation_defaults(self) -> tuple[tuple[int, ...], int]:
        """The training shots, 15 query images per class (the few-shot papers' protocol)."""
        return (self.shots,), 15

    def with_data(self, data: ClassImages | None) -> EpisodeFamily:
        if data is None:
            raise ValueError(f"{self.name} episodes need their images (a ClassImages), got None")
        return replace(self, data=data)

    @property
    def images(self) -> ClassImages:
        if self.data is None:
            raise ValueError(f"{self.name} episodes have no images attached; call with_data() first")
        return self.data

    def pool_size(self) -> int:
        return self.images.num_classes * (ROTATIONS if self.rotations else 1)

    def check(self, *, shots: int | None = None, query: int | None = None, what: str = "") -> None:
        """Raise ValueError if episodes cannot be drawn (too few classes or images per class)."""
        k, q = self.shots if shots is None else shots, self.query if query is None else query
        where = f" ({what})" if what else ""
        if self.ways > self.pool_size():
            raise ValueError(f"{self.name}{where}: ways={self.ways} is more than its {self.pool_size()} classes")
        if k + q > self.images.examples:
            raise ValueError(f"{self.name}{where}: shots + query = {k + q} exceeds the {self.images.examples} images per class")

    def sample(
        self,
        seed: int,
        stream: int,
        step: int,
        indices: Sequence[int],
        *,
        shots: int | None = None,
        query: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> TaskBatch:
        """Episodes ``indices``: support [T, ways*shots, C, H, W] with labels [T, ways*shots], query
        [T, ways*query, C, H, W] with labels [T, ways*query]; rows grouped by label 0..ways-1, the
        label order a random permutation of the drawn classes. Pixels become floats in [0, 1]."""
        k, q = self.shots if shots is None else shots, self.query if query is None else query
        self.check(shots=k, query=q)
        data, g, pool = self.images, torch.Generator(), self.pool_size()
        episodes = []
        for index in indices:
            task_generator(seed, stream, step, int(index), g)
            chosen = torch.randperm(pool, generator=g)[: self.ways]
            classes = (chosen // ROTATIONS if self.rotations else chosen).numpy()
            # uniform within each class, however many images it holds
            picks = torch.stack([torch.randperm(int(data.counts[c]), generator=g)[: k + q] for c in classes])
            images = torch.from_numpy(np.asarray(data.images[data.rows(classes, picks.numpy())]))  # [ways, k+q, C, H, W], a copy
            if self.rotations:
                images = torch.stack([torch.rot90(im, int(r), dims=(-2, -1)) for im, r in zip(images, chosen % ROTATIONS)])
            episodes.append(images)
        x = torch.stack(episodes).to(dtype) / 255.0  # [T, ways, k+q, C, H, W]
        t, shape = len(episodes), x.shape[3:]
        labels = torch.arange(self.ways)
        return TaskBatch(
            x[:, :, :k].reshape(t, self.ways * k, *shape),
            labels.repeat_interleave(k).expand(t, -1).contiguous(),
            x[:, :, k:].reshape(t, self.ways * q, *shape),
            labels.repeat_interleave(q).expand(t, -1).contiguous(),
        )
