"""The three splits, and the published class splits that are lists of names (shipped as text
files beside this module: ``<dataset>_<split>.txt``, one name per line, ``#`` comments)."""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "val", "test")


def split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


def names(dataset: str, split: str) -> list[str]:
    """The class (or superclass) names of ``dataset``'s ``split``, in the file's order."""
    split_index(split)
    lines = (Path(__file__).parent / f"{dataset}_{split}.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
