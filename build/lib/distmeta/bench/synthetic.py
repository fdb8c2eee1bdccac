"""Synthetic datasets written in the released layouts, for benchmarks and the cache measurement
(and, with their own image functions, the tests): nothing is downloaded, and the loaders read
them exactly as they read the real files.

- :func:`write_cifar100`: ``cifar-100-python/{train,test,meta}``, the pickles CIFAR-FS and FC100
  are cut from;
- :func:`write_photo_classes`: ``images/<class>/*.jpg`` trees (CUB-200-2011's layout) of any size.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

CIFAR100 = {
    # CIFAR-100's superclasses and their classes, both sorted by name as in the release's meta file
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
FINE = sorted(n for names in CIFAR100.values() for n in names)

Image3 = Callable[[int, int, int], np.ndarray]
"""``(fine class, part (0 train, 1 test), index)`` -> uint8 ``[3, 32, 32]``."""


def class_pattern(fine: int, part: int, index: int) -> np.ndarray:
    """A class's own random image plus per-image noise: learnable, and different per image."""
    base = np.random.default_rng(fine).integers(0, 256, (3, 32, 32))
    noise = np.random.default_rng((fine, part, index)).integers(-40, 41, (3, 32, 32))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_cifar100(
    root: Path, counts: Callable[[int], tuple[int, int]] = lambda fine: (500, 100), image: Image3 = class_pattern
) -> Path:
    """CIFAR-100's python release under ``root``: Python-2-style pickles (keys as bytes) of
    ``[N, 3072]`` rows (red, green, blue planes), classes interleaved as in the release.
    ``counts(fine)`` gives a class's images in the train and test files (500 and 100 in the release)."""
    coarse_names = sorted(CIFAR100)
    coarse_of = {n: coarse_names.index(c) for c, names in CIFAR100.items() for n in names}
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for part, name in enumerate(("train", "test")):
        keys = [(c, i) for c in range(len(FINE)) for i in range(counts(c)[part])]
        order = np.random.default_rng(part).permutation(len(keys))
        shuffled = [keys[k] for k in order]
        rows = np.stack([image(c, part, i).reshape(-1) for c, i in shuffled])
        fine = [c for c, _ in shuffled]
        d = {b"data": rows, b"fine_labels": fine, b"coarse_labels": [coarse_of[FINE[c]] for c in fine]}
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))
    meta = {b"fine_label_names": FINE, b"coarse_label_names": coarse_names}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def write_photo_classes(root: Path, classes: int, per_class: Callable[[int], int], size: int = 100) -> Path:
    """``root/images/NNN.Class_c/*.jpg``: ``per_class(c)`` JPEGs of ``size`` x ``size`` per class,
    each its class's colour field plus noise."""
    from PIL import Image

    for c in range(classes):
        folder = root / "images" / f"{c + 1:03d}.Class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.random.default_rng(c).integers(0, 256, (1, 1, 3))
        for i in range(per_class(c)):
            noise = np.random.default_rng((c, i)).integers(-60, 61, (size, size, 3))
            Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(folder / f"{c}_{i:05d}.jpg", quality=90)
    return root
