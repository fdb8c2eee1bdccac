"""Loaders for the two standard few-shot image datasets, from local copies in their real on-disk
layouts (distmeta never downloads). Each returns one split as a :class:`ClassImages`."""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from distmeta.errors import UserError
from distmeta.tasks.images import ClassImages

SPLITS = ("train", "val", "test")

OMNIGLOT_SPLIT = (1100, 100, 423)
"""Characters per split: the standard 1,200 meta-training characters (1,100 train + 100 kept for
validation, as in the MAML reference code) and 423 test characters, out of 1,623."""

OMNIGLOT_LAYOUT = """expected layout:
  <root>/images_background/<alphabet>/<character>/*.png
  <root>/images_evaluation/<alphabet>/<character>/*.png
(the two folders of the Omniglot release, unzipped; 105x105 PNGs, 20 per character)"""

MINIIMAGENET_LAYOUT = """expected layout (Ravi & Larochelle split):
  <root>/train.csv, <root>/val.csv, <root>/test.csv   (header 'filename,label')
  <root>/images/<filename>                            (84x84 RGB, or larger: resized)"""


def load_omniglot(root: str | Path, split: str, *, image_size: int = 28, class_split: Sequence[int] = ()) -> ClassImages:
    """Omniglot split ``split``: the 1,623 characters of both folders, sorted, shuffled with a fixed
    seed and cut into ``class_split`` (default :data:`OMNIGLOT_SPLIT`); images resized to
    ``image_size`` with ink = 255."""
    root = Path(root)
    folders = [root / "images_background", root / "images_evaluation"]
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise UserError(f"Omniglot not found under '{root}' (no {', '.join(missing)}); {OMNIGLOT_LAYOUT}")
    characters = [
        c
        for f in folders
        for a in sorted(p for p in f.iterdir() if p.is_dir())
        for c in sorted(p for p in a.iterdir() if p.is_dir())
    ]
    if not characters:
        flat = any(next(f.glob("*/*.png"), None) for f in folders)
        why = "the images sit one level too high: the <alphabet> level is missing" if flat else "no character folders"
        raise UserError(f"Omniglot under '{root}' holds no characters ({why}); {OMNIGLOT_LAYOUT}")
    counts = tuple(class_split) or OMNIGLOT_SPLIT
    if len(counts) != 3 or sum(counts) != len(characters):
        raise UserError(
            f"Omniglot under '{root}' has {len(characters)} characters; tasks.class_split={list(counts)} must be "
            f"three counts (train, val, test) adding up to that (the full dataset has 1,623: {list(OMNIGLOT_SPLIT)})"
        )
    random.Random(1).shuffle(characters)  # a fixed split, the same on every machine
    start = sum(counts[: _split_index(split)])
    chosen = characters[start : start + counts[_split_index(split)]]
    names = tuple(f"{c.parent.name}/{c.name}" for c in chosen)
    pixels = _load_grid([sorted(c.glob("*.png")) for c in chosen], names, image_size, mode="L", invert=True)
    return ClassImages(pixels, names)


def load_miniimagenet(root: str | Path, split: str, *, image_size: int = 84) -> ClassImages:
    """mini-ImageNet split ``split`` from ``<root>/<split>.csv``: classes in order of first
    appearance, each class's images in file order, RGB resized to ``image_size``."""
    root = Path(root)
    table = root / f"{split}.csv"
    missing = [name for name, ok in ((table.name, table.is_file()), ("images/", (root / "images").is_dir())) if not ok]
    if missing:
        raise UserError(f"mini-ImageNet not found under '{root}' (no {', '.join(missing)}); {MINIIMAGENET_LAYOUT}")
    by_label: dict[str, list[Path]] = {}
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise UserError(f"{table} must have the header 'filename,label', found {reader.fieldnames}")
        for row in reader:
            by_label.setdefault(row["label"], []).append(root / "images" / row["filename"])
    if not by_label:
        raise UserError(f"{table} lists no images")
    pixels = _load_grid(list(by_label.values()), tuple(by_label), image_size, mode="RGB", invert=False)
    return ClassImages(pixels, tuple(by_label))


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


def _load_grid(per_class: list[list[Path]], names: Sequence[str], size: int, *, mode: str, invert: bool) -> np.ndarray:
    """Decode ``per_class`` image files into uint8 ``[classes, examples, channels, size, size]``.
    Classes with more images than the smallest class are cut to its count (a grid needs one M)."""
    examples = min(len(files) for files in per_class)
    if examples == 0:
        empty = next(name for name, files in zip(names, per_class) if not files)
        raise UserError(f"class '{empty}' has no images")
    files = [f for group in per_class for f in group[:examples]]
    channels = 1 if mode == "L" else 3
    with ThreadPoolExecutor(max_workers=8) as pool:  # decoding releases the GIL
        images = list(pool.map(lambda p: _read(p, size, mode, invert), files))
    return np.stack(images).reshape(len(per_class), examples, channels, size, size)


def _read(path: Path, size: int, mode: str, invert: bool) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    if invert:  # Omniglot draws black ink on white; the networks see ink as 1
        a = 255 - a
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
