"""CIFAR-FS (Bertinetto et al., ICLR 2019) and FC100 (Oreshkin et al., NeurIPS 2018): both are
CIFAR-100 cut by classes, read from CIFAR-100's own ``cifar-100-python`` pickles. A class holds
all 600 of its images (CIFAR-100's 500 training and 100 test images, in that order).

- CIFAR-FS: 64 / 16 / 20 fine classes (``splits/cifar_fs_*.txt``);
- FC100: 12 / 4 / 4 superclasses, so 60 / 20 / 20 fine classes (``splits/fc100_*.txt``), which
  keeps the splits semantically apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distmeta.errors import UserError
from distmeta.tasks.datasets import splits
from distmeta.tasks.datasets.decode import Allocate, entry, in_memory, load_pickle, resize_array
from distmeta.tasks.images import ClassImages

CIFAR_LAYOUT = """expected layout (CIFAR-100, python version, unpacked):
  <root>/cifar-100-python/train   <root>/cifar-100-python/test   <root>/cifar-100-python/meta
(<root> may also be the cifar-100-python folder itself)"""

FILES = ("train", "test", "meta")


def cifar_files(root: str | Path) -> dict[str, Path]:
    """The three pickles of the release under ``root`` (or ``root/cifar-100-python``)."""
    root = Path(root)
    folder = root / "cifar-100-python" if (root / "cifar-100-python").is_dir() else root
    files = {name: folder / name for name in FILES}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise UserError(f"CIFAR-100 not found under '{root}' (no {', '.join(missing)}); {CIFAR_LAYOUT}")
    return files


def cifar_sources(root: str | Path) -> list[Path]:
    return list(cifar_files(root).values())


def load_cifar_fs(root: str | Path, split: str, *, image_size: int = 32, allocate: Allocate = in_memory) -> ClassImages:
    return _load(root, split, image_size, "CIFAR-FS", allocate, fine=splits.names("cifar_fs", split))


def load_fc100(root: str | Path, split: str, *, image_size: int = 32, allocate: Allocate = in_memory) -> ClassImages:
    return _load(root, split, image_size, "FC100", allocate, coarse=splits.names("fc100", split))


def _load(
    root, split: str, size: int, what: str, allocate: Allocate, fine: list[str] | None = None, coarse: list[str] | None = None
) -> ClassImages:
    files = cifar_files(root)
    meta = load_pickle(files["meta"], f"{what}: ")
    fine_names = list(entry(meta, "fine_label_names", files["meta"], f"{what}: "))
    coarse_names = list(entry(meta, "coarse_label_names", files["meta"], f"{what}: "))
    parts = [_part(files[name], what) for name in ("train", "test")]
    pixels = np.concatenate([p[0] for p in parts])
    fine_labels, coarse_labels = (np.concatenate([p[i] for p in parts]) for i in (1, 2))
    if coarse:
        wanted = _indices(coarse, coarse_names, what, "superclass")
        classes = sorted({int(f) for f, c in zip(fine_labels, coarse_labels) if c in set(wanted)})
    else:
        classes = _indices(fine or [], fine_names, what, "class")
    rows = [np.flatnonzero(fine_labels == c) for c in classes]  # stable: the train file's images first
    empty = [fine_names[c] for c, r in zip(classes, rows) if not len(r)]
    if empty:
        raise UserError(f"{what}: no images of {', '.join(empty)} in {files['train'].parent}")
    images = resize_array(pixels[np.concatenate(rows)], size, allocate)
    return ClassImages.ragged(images, [len(r) for r in rows], [fine_names[c] for c in classes])


def _part(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = load_pickle(path, f"{what}: ")
    data = np.asarray(entry(d, "data", path, f"{what}: "), dtype=np.uint8)
    fine = np.asarray(entry(d, "fine_labels", path, f"{what}: "))
    coarse = np.asarray(entry(d, "coarse_labels", path, f"{what}: "))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or not len(data) == len(fine) == len(coarse):
        raise UserError(
            f"{what}: {path} holds data of shape {data.shape} with {len(fine)} fine and {len(coarse)} coarse labels; "
            "CIFAR-100 stores [N, 3072] rows (32x32, red, green, blue planes) with one label of each per row"
        )
    return data.reshape(-1, 3, 32, 32), fine, coarse


def _indices(wanted: list[str], known: list[str], what: str, kind: str) -> list[int]:
    missing = [n for n in wanted if n not in known]
    if missing:
        raise UserError(f"{what}: the {kind} names {', '.join(missing)} are not in CIFAR-100's meta file")
    return [known.index(n) for n in wanted]
