"""The task-family registry: every family kind a config may name, with what it needs and offers.

Adding a family is one module plus one :func:`register` call; the config validator and the recipe
ask this registry what exists and what each kind needs (a dataset folder, images, ranges).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distmeta.registry import Registry
from distmeta.tasks import datasets
from distmeta.tasks.datasets.decode import Allocate
from distmeta.tasks.functions import KINDS as FUNCTION_KINDS
from distmeta.tasks.functions import FunctionFamily
from distmeta.tasks.glyphs import GlyphSource
from distmeta.tasks.images import ClassImages, EpisodeFamily
from distmeta.tasks.protocol import TaskFamily
from distmeta.tasks.rl import ENVIRONMENTS


@dataclass(frozen=True)
class FamilyRequest:
    """One family of a run, every setting resolved (built by the recipe from the config)."""

    kind: str
    label: str
    shots: int
    query: int
    ways: int = 5
    ranges: tuple[tuple[str, tuple[float, float]], ...] = ()
    x_range: tuple[float, float] = (-5.0, 5.0)
    noise: float = 0.0
    """Regression: the standard deviation of the targets' Gaussian noise."""
    root: str = ""
    rotations: bool = False
    """Rotated copies as extra classes, for the training split."""
    image_size: int = 0
    channels: int = 0
    class_split: tuple[int, ...] = ()
    cache_dir: str = ""
    """Where decoded splits are cached (resolved: ``tasks.cache_dir`` or under the root); empty: no cache."""


@dataclass(frozen=True)
class FamilyKind:
    name: str
    loss: str
    """The loss its tasks train with (``distmeta.algorithms.LOSSES``); a mixture shares one."""
    build: Callable[[FamilyRequest, str], TaskFamily]
    """``(request, split)`` -> the family of that split, without its data."""
    load: Callable[[FamilyRequest, str, Allocate], ClassImages] | None = None
    """``(request, split, allocate)`` -> the split's images, decoded into ``allocate``'s array;
    None for families that compute their tasks."""
    image_size: int = 0
    """Standard side of its images (the run resizes every family to one side)."""
    channels: int = 0
    needs_root: bool = False
    """Reads a local copy of a dataset (``tasks.root`` or the family's ``root``)."""
    rotations: bool = False
    """Rotated training classes by default (Omniglot, as the MAML paper)."""
    rotatable: bool = True
    """Whether rotations make new classes (characters: yes; photos: no)."""
    class_split: bool = False
    """Takes ``tasks.class_split`` (counts of classes per split)."""
    params: tuple[str, ...] = ()
    """Regression parameters whose ranges a config may set."""
    observations: int = 0
    """An environment family's observation size (its policy's input); 0: not an environment family."""
    actions: int = 0
    """An environment family's action size (its policy's output)."""
    sources: Callable[[FamilyRequest, str], list[Path]] | None = None
    """``(request, split)`` -> the files a split is decoded from: a dataset with sources is
    cached once decoded (``tasks.cache``), and a change to any of them decodes it again."""

    @property
    def images(self) -> bool:
        return self.load is not None

    @property
    def environments(self) -> bool:
        """Its tasks are environments (meta-RL): trained by policy gradients, scored by returns."""
        return self.observations > 0


FAMILIES: Registry[FamilyKind] = Registry("task family")


def register(kind: FamilyKind) -> FamilyKind:
    return FAMILIES.add(kind.name, kind)


def family_kind(name: str) -> FamilyKind:
    return FAMILIES.lookup(name)


def _function_family(r: FamilyRequest, split: str) -> TaskFamily:
    return FunctionFamily(r.kind, r.shots, r.query, r.ranges, r.x_range, name=r.label, noise=r.noise)


def _episodes(r: FamilyRequest, split: str) -> TaskFamily:
    return EpisodeFamily(r.label, ways=r.ways, shots=r.shots, query=r.query, rotations=r.rotations and split == "train")


def _photos(name: str, load, sources, image_size: int, by_split: bool = False) -> FamilyKind:
    """A photo dataset under ``tasks.root``: ``load(root, split, image_size=, allocate=)``;
    ``sources(root)`` (or ``sources(root, split)``) lists the files a split depends on."""
    return FamilyKind(
        name,
        "cross_entropy",
        _episodes,
        lambda r, split, allocate: load(r.root, split, image_size=r.image_size, allocate=allocate),
        image_size,
        3,
        needs_root=True,
        rotatable=False,
        sources=(lambda r, split: sources(r.root, split)) if by_split else (lambda r, split: sources(r.root)),
    )


for _name, _kind in FUNCTION_KINDS.items():
    register(FamilyKind(_name, "mse", _function_family, params=tuple(n for n, _ in _kind.params)))
register(
    FamilyKind(
        "glyphs", "cross_entropy", _episodes, lambda r, split, allocate: GlyphSource(image_size=r.image_size).load(split), 28, 1
    )
)
register(
    FamilyKind(
        "omniglot",
        "cross_entropy",
        _episodes,
        lambda r, split, allocate: datasets.load_omniglot(
            r.root, split, image_size=r.image_size, class_split=r.class_split, allocate=allocate
        ),
        28,
        1,
        needs_root=True,
        rotations=True,
        class_split=True,
        sources=lambda r, split: datasets.omniglot_sources(r.root),
    )
)
for _name, _env in ENVIRONMENTS.items():
    register(
        FamilyKind(
            _name, "return", lambda r, split, make=_env.make: make(r.label, r.shots, r.query), observations=_env.tasks.observations,
            actions=_env.tasks.actions,
        )
    )  # fmt: skip
register(_photos("miniimagenet", datasets.load_miniimagenet, datasets.miniimagenet_sources, 84, by_split=True))
register(_photos("tieredimagenet", datasets.load_tiered, datasets.tiered_sources, 84, by_split=True))
register(_photos("cifar_fs", datasets.load_cifar_fs, datasets.cifar_sources, 32))
register(_photos("fc100", datasets.load_fc100, datasets.cifar_sources, 32))
register(_photos("cub", datasets.load_cub, datasets.cub_sources, 84))
