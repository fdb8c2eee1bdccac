"""Turning a dataset's files into uint8 class images: image decoding (files or encoded bytes),
resizing, and the restricted unpickler for the datasets released as pickles."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from distmeta.errors import UserError
from distmeta.tasks.images import ClassImages

Allocate = Callable[[tuple[int, ...]], np.ndarray]
"""Where a loader decodes into: memory (:func:`in_memory`), or a cache entry's file opened for writing."""


def in_memory(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, dtype=np.uint8)


Encoded = Path | bytes | str | np.ndarray
"""An image file, or its encoded bytes (tieredImageNet holds PNGs inside a pickle: uint8 arrays,
or Python 2 byte strings, which a ``latin1`` unpickling turns into text of the same bytes)."""


def decode_ragged(
    per_class: Sequence[Sequence[Encoded]], names: Sequence[str], size: int, *, mode: str, invert: bool = False, what: str = "",
    allocate: Allocate = in_memory,
) -> ClassImages:  # fmt: skip
    """Decode every class's images, each class keeping all of its own (no padding, no cut), into
    an array from ``allocate`` (the cache passes its file, so a large split never sits in memory)."""
    empty = next((name for name, files in zip(names, per_class) if not len(files)), None)
    if empty is not None:
        raise UserError(f"{what}class '{empty}' has no images")
    flat = [f for group in per_class for f in group]
    channels = 1 if mode == "L" else 3
    out = allocate((len(flat), channels, size, size))

    def into(i: int) -> None:
        out[i] = read_image(flat[i], size, mode, invert, what)

    with ThreadPoolExecutor(max_workers=8) as pool:  # decoding releases the GIL
        list(pool.map(into, range(len(flat))))
    return ClassImages.ragged(out, [len(g) for g in per_class], names)


def decode_grid(
    per_class: Sequence[Sequence[Path]],
    names: Sequence[str],
    size: int,
    *,
    mode: str,
    invert: bool,
    allocate: Allocate = in_memory,
) -> ClassImages:
    """Decode into a grid: classes with more images than the smallest are cut to its count
    (Omniglot and mini-ImageNet, whose classes hold equally many)."""
    examples = min(len(files) for files in per_class)
    if examples == 0:
        empty = next(name for name, files in zip(names, per_class) if not files)
        raise UserError(f"class '{empty}' has no images")
    return decode_ragged([files[:examples] for files in per_class], names, size, mode=mode, invert=invert, allocate=allocate)


def read_image(source: Encoded, size: int, mode: str, invert: bool = False, what: str = "") -> np.ndarray:
    """One image as uint8 ``[channels, size, size]`` (resized with Lanczos when it is another size)."""
    from PIL import Image

    shown = f"image {source}" if isinstance(source, Path) else "an encoded image"
    if isinstance(source, str):
        source = source.encode("latin1")
    try:
        with Image.open(source if isinstance(source, Path) else io.BytesIO(bytes(source))) as im:
            im = im.convert(mode)
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            a = np.asarray(im, dtype=np.uint8)
    except OSError as exc:
        raise UserError(f"{what}cannot read {shown}: {exc}") from None
    if invert:  # Omniglot draws black ink on white; the networks see ink as 1
        a = 255 - a
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def resize_array(images: np.ndarray, size: int, allocate: Allocate = in_memory) -> np.ndarray:
    """uint8 ``[N, channels, H, W]`` resized to ``size``, into an array from ``allocate``."""
    from PIL import Image

    out = allocate((len(images), images.shape[1], size, size))
    if images.shape[-1] == size and images.shape[-2] == size:
        out[:] = images
        return out
    for i, im in enumerate(images):
        pil = Image.fromarray(im.transpose(1, 2, 0).squeeze(-1) if im.shape[0] == 1 else im.transpose(1, 2, 0))
        a = np.asarray(pil.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
        out[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return out


class _ArraysOnly(pickle.Unpickler):
    """Unpickles containers, numbers, strings and numpy arrays, nothing else: a dataset's pickle
    cannot run code on load."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"), ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 rebuild bytes
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only arrays and containers)")
        if module.startswith("numpy.core"):  # pickles of NumPy 1 name the module NumPy 2 calls numpy._core
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def load_pickle(path: Path, what: str) -> Any:
    """A released pickle (Python 2 ones too: ``latin1`` keeps their byte strings' bytes)."""
    try:
        with path.open("rb") as f:
            return _ArraysOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise UserError(f"{what}{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None


def entry(d: dict, key: str, path: Path, what: str) -> Any:
    """``d[key]`` whether the pickle stored its keys as text or as bytes."""
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise UserError(f"{what}{path} has no '{key}' entry (found {', '.join(map(str, d))})")
