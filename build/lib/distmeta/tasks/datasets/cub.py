"""CUB-200-2011 (Wah et al. 2011) in the class split of Chen et al., "A Closer Look at Few-shot
Classification" (ICLR 2019): the 200 class folders sorted by name; even positions are the 100
training classes, positions 1 mod 4 the 50 validation and 3 mod 4 the 50 test classes. Classes
hold 41-60 images (ragged); photos of any size are resized to a square (the aspect is not kept)."""

from __future__ import annotations

from pathlib import Path

from distmeta.errors import UserError
from distmeta.tasks.datasets.decode import Allocate, decode_ragged, in_memory
from distmeta.tasks.datasets.splits import split_index
from distmeta.tasks.images import ClassImages

CUB_LAYOUT = """expected layout (CUB_200_2011.tgz, unpacked):
  <root>/images/<NNN.Class_name>/*.jpg      (<root> is the CUB_200_2011 folder, or the one holding it)"""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def cub_classes(root: str | Path) -> list[Path]:
    """Every class folder, sorted by name."""
    root = Path(root)
    images = root / "images" if (root / "images").is_dir() else root / "CUB_200_2011" / "images"
    if not images.is_dir():
        raise UserError(f"CUB-200-2011 not found under '{root}' (no images/); {CUB_LAYOUT}")
    classes = sorted(p for p in images.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"CUB-200-2011 under '{root}' holds no class folders; {CUB_LAYOUT}")
    return classes


def split_classes(classes: list[Path], split: str) -> list[Path]:
    """Chen et al.'s rule: train ``i % 2 == 0``, val ``i % 4 == 1``, test ``i % 4 == 3``."""
    keep = {0: lambda i: i % 2 == 0, 1: lambda i: i % 4 == 1, 2: lambda i: i % 4 == 3}[split_index(split)]
    return [c for i, c in enumerate(classes) if keep(i)]


def cub_sources(root: str | Path) -> list[Path]:
    return [f for c in cub_classes(root) for f in c.iterdir() if f.is_file()]


def load_cub(root: str | Path, split: str, *, image_size: int = 84, allocate: Allocate = in_memory) -> ClassImages:
    chosen = split_classes(cub_classes(root), split)
    if not chosen:
        raise UserError(f"CUB-200-2011 under '{root}' has too few classes for a {split} split (it takes 4 or more)")
    files = [sorted(f for f in c.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for c in chosen]
    return decode_ragged(files, [c.name for c in chosen], image_size, mode="RGB", what="CUB-200-2011: ", allocate=allocate)
