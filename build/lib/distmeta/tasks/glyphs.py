"""Procedural glyphs: an Omniglot-shaped few-shot family drawn in code, with no files.

Each of ``num_alphabets`` alphabets has a style (how many strokes its characters have, how far
their control points reach, how thick they are drawn); each of its characters is a fixed set of
quadratic Bezier strokes; each character is drawn ``drawings`` times (Omniglot has 20 drawers)
with jittered control points and a small random rotation, scale and shift. Everything is a pure
function of ``(family seed, alphabet, character, drawing)``, so any process renders the same
image. Classes are split by alphabet, as Omniglot's background/evaluation sets are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from distmeta.tasks.images import ClassImages
from distmeta.tasks.seeding import task_generator, task_seed

SPLITS = ("train", "val", "test")
_POINTS_PER_STROKE = 24


@dataclass(frozen=True)
class GlyphSource:
    """``num_alphabets * chars_per_alphabet`` classes (default 50 * 33 = 1,650), split by alphabet
    into ``train``/``val``/``test`` with ``split_alphabets`` alphabets each. Images are
    ``[1, image_size, image_size]``, ink = 1."""

    image_size: int = 28
    num_alphabets: int = 50
    chars_per_alphabet: int = 33
    drawings: int = 20
    split_alphabets: tuple[int, int, int] = (36, 6, 8)
    family_seed: int = 1234
    jitter: float = 0.15
    """Std of the per-drawing noise on each control point (the glyph spans [-1, 1])."""
    rotation: float = 0.5
    """Drawings are rotated by up to this many radians either way."""
    shift: float = 0.2
    """... and shifted by up to this much in x and y."""

    def __post_init__(self):
        if sum(self.split_alphabets) != self.num_alphabets:
            raise ValueError(f"split_alphabets {self.split_alphabets} must add up to num_alphabets={self.num_alphabets}")

    @property
    def num_classes(self) -> int:
        return self.num_alphabets * self.chars_per_alphabet

    def classes(self, split: str) -> range:
        """Global class ids of ``split`` (contiguous: classes are numbered alphabet by alphabet)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        i = SPLITS.index(split)
        start = sum(self.split_alphabets[:i]) * self.chars_per_alphabet
        return range(start, start + self.split_alphabets[i] * self.chars_per_alphabet)

    def drawings_of(self, cls: int) -> torch.Tensor:
        """All drawings of class ``cls``: [drawings, image_size, image_size] floats in [0, 1]."""
        return _render(self, cls)

    def load(self, split: str) -> ClassImages:
        """Render every drawing of ``split``'s classes into a :class:`ClassImages` (seconds for
        the training split; kept per process, read-only)."""
        return _load(self, split)


@lru_cache(maxsize=8)
def _load(source: GlyphSource, split: str) -> ClassImages:
    classes = source.classes(split)
    pixels = np.empty((len(classes), source.drawings, 1, source.image_size, source.image_size), dtype=np.uint8)
    for row, cls in enumerate(classes):
        pixels[row, :, 0] = (source.drawings_of(cls) * 255).round().to(torch.uint8).numpy()
    pixels.flags.writeable = False
    names = tuple(f"alphabet{c // source.chars_per_alphabet:02d}/character{c % source.chars_per_alphabet:02d}" for c in classes)
    return ClassImages.grid(pixels, names)


def _uniform(g: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def _character_strokes(family_seed: int, chars_per_alphabet: int, cls: int) -> torch.Tensor:
    """The character's strokes: [strokes, 3, 2] Bezier control points in [-1, 1]^2."""
    alphabet = cls // chars_per_alphabet
    style = task_generator(family_seed, 10, alphabet, 0)
    min_strokes = int(torch.randint(1, 3, (1,), generator=style))
    max_strokes = min_strokes + int(torch.randint(1, 4, (1,), generator=style))
    reach = float(_uniform(style, 1, 0.3, 0.8))  # how far a stroke's control points wander
    g = task_generator(family_seed, 11, cls, 0)
    n = int(torch.randint(min_strokes, max_strokes + 1, (1,), generator=g))
    start = _uniform(g, 2 * n, -0.7, 0.7).view(n, 1, 2)
    offsets = (torch.rand(n, 2, 2, generator=g, dtype=torch.float64) * 2 - 1) * reach
    return torch.cat([start, start + offsets.cumsum(1)], 1).clamp(-0.9, 0.9)


def _alphabet_thickness(family_seed: int, alphabet: int) -> float:
    style = task_generator(family_seed, 12, alphabet, 0)
    return float(_uniform(style, 1, 0.07, 0.13))


def _drawing_transform(source: GlyphSource, cls: int, drawing: int, shape: torch.Size):
    """Per-drawing jitter of the control points and a similarity transform (rotation, scale, shift)."""
    g = torch.Generator().manual_seed(task_seed(source.family_seed, 13, cls, drawing))
    jitter = source.jitter * torch.randn(shape, generator=g, dtype=torch.float64)
    angle = float(_uniform(g, 1, -source.rotation, source.rotation))
    scale = float(_uniform(g, 1, 0.85, 1.1))
    shift = _uniform(g, 2, -source.shift, source.shift)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    return jitter, rot.T * scale, shift


@lru_cache(maxsize=256)
def _render(source: GlyphSource, cls: int) -> torch.Tensor:
    """Rasterise every drawing of a class at once: jitter and transform the control points, then
    shade pixels by their distance to the strokes (anti-aliased)."""
    family_seed, chars_per_alphabet, size, drawings = (
        source.family_seed,
        source.chars_per_alphabet,
        source.image_size,
        source.drawings,
    )
    strokes = _character_strokes(family_seed, chars_per_alphabet, cls)
    pts = []
    for d in range(drawings):
        jitter, linear, shift = _drawing_transform(source, cls, d, strokes.shape)
        pts.append((strokes + jitter) @ linear + shift)
    p = torch.stack(pts)  # [D, strokes, 3, 2]
    t = torch.linspace(0, 1, _POINTS_PER_STROKE, dtype=torch.float64).view(1, 1, -1, 1)
    p0, p1, p2 = p[:, :, 0:1], p[:, :, 1:2], p[:, :, 2:3]
    curve = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2).reshape(drawings, -1, 2)  # [D, strokes*P, 2]
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(1, -1, 2).expand(drawings, -1, -1)
    dist = torch.cdist(grid, curve).min(2).values  # [D, S*S]
    thickness = _alphabet_thickness(family_seed, cls // chars_per_alphabet)
    ink = ((thickness - dist) / (2.0 / size) + 0.5).clamp(0, 1)
    return ink.view(drawings, size, size).float()
