"""Loaders for the few-shot image datasets, from local copies in their released layouts
(distmeta never downloads). Each returns one split as a :class:`~distmeta.tasks.images.ClassImages`
and decodes into the array its ``allocate`` gives (the cache's file); each ``*_sources`` lists
the files a split depends on, for the cache's manifest."""

from distmeta.tasks.datasets.cache import cached
from distmeta.tasks.datasets.cifar import cifar_sources, load_cifar_fs, load_fc100
from distmeta.tasks.datasets.cub import cub_sources, load_cub
from distmeta.tasks.datasets.miniimagenet import load_miniimagenet, miniimagenet_sources
from distmeta.tasks.datasets.omniglot import OMNIGLOT_SPLIT, load_omniglot, omniglot_sources
from distmeta.tasks.datasets.splits import SPLITS
from distmeta.tasks.datasets.tiered import load_tiered, tiered_sources

__all__ = [
    "OMNIGLOT_SPLIT", "SPLITS", "cached", "cifar_sources", "cub_sources", "load_cifar_fs", "load_cub", "load_fc100",
    "load_miniimagenet", "load_omniglot", "load_tiered", "miniimagenet_sources", "omniglot_sources", "tiered_sources",
]  # fmt: skip
