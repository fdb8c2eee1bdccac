"""mini-ImageNet (Vinyals et al. 2016) in the split of Ravi & Larochelle (2017)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from distmeta.errors import UserError
from distmeta.tasks.datasets.decode import Allocate, decode_grid, in_memory
from distmeta.tasks.images import ClassImages

MINIIMAGENET_LAYOUT = """expected layout (Ravi & Larochelle split):
  <root>/train.csv, <root>/val.csv, <root>/test.csv   (header 'filename,label')
  <root>/images/<filename>                            (84x84 RGB, or larger: resized)"""


def load_miniimagenet(root: str | Path, split: str, *, image_size: int = 84, allocate: Allocate = in_memory) -> ClassImages:
    """mini-ImageNet split ``split`` from ``<root>/<split>.csv``: classes in order of first
    appearance, each class's images in file order, RGB resized to ``image_size``."""
    root = Path(root)
    table = _table(root, split)
    by_label: dict[str, list[Path]] = {}
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise UserError(f"{table} must have the header 'filename,label', found {reader.fieldnames}")
        for row in reader:
            by_label.setdefault(row["label"], []).append(root / "images" / row["filename"])
    if not by_label:
        raise UserError(f"{table} lists no images")
    return decode_grid(list(by_label.values()), tuple(by_label), image_size, mode="RGB", invert=False, allocate=allocate)


def _table(root: Path, split: str) -> Path:
    table = root / f"{split}.csv"
    missing = [name for name, ok in ((table.name, table.is_file()), ("images/", (root / "images").is_dir())) if not ok]
    if missing:
        raise UserError(f"mini-ImageNet not found under '{root}' (no {', '.join(missing)}); {MINIIMAGENET_LAYOUT}")
    return table


def miniimagenet_sources(root: str | Path, split: str) -> list[Path]:
    """The split's table and every file in ``images/``."""
    root = Path(root)
    table = _table(root, split)
    return [table, *(Path(e.path) for e in os.scandir(root / "images") if e.is_file())]
