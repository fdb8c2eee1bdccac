"""Few-shot image classification: the class-image store every image family loads into, and the
N-way K-shot episode sampler over it.

A family's split is one :class:`ClassImages` (a uint8 array ``[classes, examples, channels, H, W]``)
built once in the driver; shard actors receive it through the Ray object store and read it there
without copying. Episodes are sampled where they are computed, from ``(seed, stream, step, index)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.seeding import task_generator

ROTATIONS = 4  # 0, 90, 180, 270 degrees


@dataclass(frozen=True, eq=False)
class ClassImages:
    """``pixels``: uint8 ``[C, M, channels, H, W]``, M examples of each of C classes (pixel 255 is
    full ink/brightness); ``names``: each class's name (e.g. ``Latin/character01``)."""

    pixels: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self):
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 5:
            raise ValueError(
                f"pixels must be uint8 [classes, examples, channels, H, W], got {self.pixels.dtype} {self.pixels.shape}"
            )
        if len(self.names) != self.pixels.shape[0]:
            raise ValueError(f"{len(self.names)} names for {self.pixels.shape[0]} classes")

    @property
    def num_classes(self) -> int:
        return self.pixels.shape[0]

    @property
    def examples(self) -> int:
        return self.pixels.shape[1]

    def with_channels(self, channels: int) -> ClassImages:
        """Grey images repeated to ``channels`` (to mix with colour families); unchanged if they match."""
        have = self.pixels.shape[2]
        if have == channels:
            return self
        if have != 1:
            raise ValueError(f"cannot turn {have}-channel images into {channels} channels")
        return ClassImages(np.repeat(self.pixels, channels, axis=2), self.names)

    def partition(self, part: int, parts: int) -> ClassImages:
        """Classes ``part, part + parts, ...``: disjoint class sets for class-partitioned shards."""
        rows = np.arange(part, self.num_classes, parts)
        return ClassImages(np.ascontiguousarray(self.pixels[rows]), tuple(self.names[i] for i in rows))


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
            picks = torch.stack([torch.randperm(data.examples, generator=g)[: k + q] for _ in range(self.ways)])
            rows = (chosen // ROTATIONS if self.rotations else chosen).numpy()
            images = torch.from_numpy(data.pixels[rows[:, None], picks.numpy()])  # [ways, k+q, C, H, W], a copy
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
