"""Omniglot (Lake et al. 2015) from the two folders of its release."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from distmeta.errors import UserError
from distmeta.tasks.datasets.decode import Allocate, decode_grid, in_memory
from distmeta.tasks.datasets.splits import split_index
from distmeta.tasks.images import ClassImages

OMNIGLOT_SPLIT = (1100, 100, 423)
"""Characters per split: the standard 1,200 meta-training characters (1,100 train + 100 kept for
validation, as in the MAML reference code) and 423 test characters, out of 1,623."""

OMNIGLOT_LAYOUT = """expected layout:
  <root>/images_background/<alphabet>/<character>/*.png
  <root>/images_evaluation/<alphabet>/<character>/*.png
(the two folders of the Omniglot release, unzipped; 105x105 PNGs, 20 per character)"""


def load_omniglot(
    root: str | Path, split: str, *, image_size: int = 28, class_split: Sequence[int] = (), allocate: Allocate = in_memory
) -> ClassImages:
    """Omniglot split ``split``: the 1,623 characters of both folders, sorted, shuffled with a fixed
    seed and cut into ``class_split`` (default :data:`OMNIGLOT_SPLIT`); images resized to
    ``image_size`` with ink = 255."""
    root = Path(root)
    folders = omniglot_folders(root)
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
    start = sum(counts[: split_index(split)])
    chosen = characters[start : start + counts[split_index(split)]]
    names = tuple(f"{c.parent.name}/{c.name}" for c in chosen)
    return decode_grid([sorted(c.glob("*.png")) for c in chosen], names, image_size, mode="L", invert=True, allocate=allocate)


def omniglot_folders(root: Path) -> list[Path]:
    folders = [root / "images_background", root / "images_evaluation"]
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise UserError(f"Omniglot not found under '{root}' (no {', '.join(missing)}); {OMNIGLOT_LAYOUT}")
    return folders


def omniglot_sources(root: str | Path) -> list[Path]:
    """Every file the splits depend on (the split is drawn over all characters)."""
    return [p for f in omniglot_folders(Path(root)) for p in f.rglob("*.png")]
