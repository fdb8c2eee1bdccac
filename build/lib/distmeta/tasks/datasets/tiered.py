"""tieredImageNet (Ren et al., ICLR 2018) as its authors released it, and as learn2learn and
torchmeta read it: per split a pickle of PNG-encoded 84x84 images and a pickle of labels.
351 / 97 / 160 classes from 20 / 6 / 8 general categories; about 1,300 images per class, so
classes hold different numbers of images (kept as they are, :class:`ClassImages` is ragged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distmeta.errors import UserError
from distmeta.tasks.datasets.decode import Allocate, decode_ragged, entry, in_memory, load_pickle
from distmeta.tasks.datasets.splits import split_index
from distmeta.tasks.images import ClassImages

TIERED_LAYOUT = """expected layout (Ren et al.'s release, unpacked):
  <root>/train_images_png.pkl  <root>/train_labels.pkl   (and val_*, test_*)
  *_images_png.pkl: a list of PNG-encoded images (uint8 arrays of the file's bytes)
  *_labels.pkl: a dict with 'label_specific' (one class index per image) and
                'label_specific_str' (the class names), besides the general labels"""


def tiered_files(root: str | Path, split: str) -> dict[str, Path]:
    split_index(split)
    root = Path(root)
    files = {"images": root / f"{split}_images_png.pkl", "labels": root / f"{split}_labels.pkl"}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise UserError(f"tieredImageNet not found under '{root}' (no {', '.join(missing)}); {TIERED_LAYOUT}")
    return files


def tiered_sources(root: str | Path, split: str) -> list[Path]:
    return list(tiered_files(root, split).values())


def load_tiered(root: str | Path, split: str, *, image_size: int = 84, allocate: Allocate = in_memory) -> ClassImages:
    """Split ``split``: classes in order of their index, each class's images in file order."""
    files, what = tiered_files(root, split), "tieredImageNet: "
    labels = load_pickle(files["labels"], what)
    if not isinstance(labels, dict):
        raise UserError(f"{what}{files['labels']} holds a {type(labels).__name__}, not a dict of labels; {TIERED_LAYOUT}")
    specific = np.asarray(entry(labels, "label_specific", files["labels"], what)).astype(np.int64)
    images = load_pickle(files["images"], what)
    if not hasattr(images, "__len__") or len(images) != len(specific):
        count = len(images) if hasattr(images, "__len__") else type(images).__name__
        raise UserError(f"{what}{files['images']} holds {count} images for {len(specific)} labels")
    if len(specific) == 0 or specific.min() < 0:
        raise UserError(f"{what}{files['labels']}: 'label_specific' must be class indices 0, 1, ..., got {specific[:5]}")
    classes = int(specific.max()) + 1
    names = _class_names(labels, classes)
    order = np.argsort(specific, kind="stable")
    counts = np.bincount(specific, minlength=classes)
    per_class = np.split(order, np.cumsum(counts)[:-1])
    return decode_ragged(
        [[images[i] for i in rows] for rows in per_class], names, image_size, mode="RGB", what=what, allocate=allocate
    )


def _class_names(labels: dict, classes: int) -> tuple[str, ...]:
    for key in ("label_specific_str", b"label_specific_str"):
        if key in labels and len(labels[key]) == classes:
            return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in labels[key])
    return tuple(f"class{c:03d}" for c in range(classes))
