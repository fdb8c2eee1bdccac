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
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import torch

from distmeta.tasks.batch import TaskBatch
from distmeta.tasks.seeding import task_generator, task_seed

SPLITS = ("train", "val", "test")
_POINTS_PER_STROKE = 24


@dataclass(frozen=True)
class GlyphFamily:
    """N-way K-shot episodes over procedurally drawn characters.

    ``num_alphabets * chars_per_alphabet`` classes (default 50 * 33 = 1,650), split by alphabet into
    ``train``/``val``/``test`` with ``split_alphabets`` alphabets each. Images are
    ``[1, image_size, image_size]`` floats in [0, 1], ink = 1.
    """

    ways: int = 5
    shots: int = 1
    query: int = 15
    split: str = "train"
    image_size: int = 28
    num_alphabets: int = 50
    chars_per_alphabet: int = 33
    drawings: int = 20
    split_alphabets: tuple[int, int, int] = (36, 6, 8)
    family_seed: int = 1234
    name: str = field(default="glyphs")

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if sum(self.split_alphabets) != self.num_alphabets:
            raise ValueError(f"split_alphabets {self.split_alphabets} must add up to num_alphabets={self.num_alphabets}")
        if self.ways > len(self.classes()):
            raise ValueError(f"ways={self.ways} is more than the {len(self.classes())} classes of the {self.split} split")
        if self.shots + self.query > self.drawings:
            raise ValueError(f"shots + query = {self.shots + self.query} exceeds the {self.drawings} drawings per class")

    @property
    def num_classes(self) -> int:
        return self.num_alphabets * self.chars_per_alphabet

    def classes(self) -> range:
        """Global class ids of this family's split (contiguous: classes are numbered alphabet by alphabet)."""
        start = sum(self.split_alphabets[: SPLITS.index(self.split)])
        n = self.split_alphabets[SPLITS.index(self.split)]
        return range(start * self.chars_per_alphabet, (start + n) * self.chars_per_alphabet)

    def image(self, cls: int, drawing: int) -> torch.Tensor:
        """One drawing of class ``cls``: [1, image_size, image_size]."""
        return _render(self.family_seed, self.chars_per_alphabet, self.image_size, cls, drawing).unsqueeze(0)

    def sample(self, seed: int, stream: int, step: int, indices: Sequence[int], *, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """Episodes ``indices`` of meta-step ``step``: support [T, ways*shots, 1, S, S] with labels
        [T, ways*shots], query [T, ways*query, 1, S, S] with labels [T, ways*query]. Labels are
        0..ways-1 in a per-episode random order of the drawn classes; rows are grouped by label."""
        pool = torch.tensor(self.classes())
        g = torch.Generator()
        sx, sy, qx, qy = [], [], [], []
        for index in indices:
            task_generator(seed, stream, step, int(index), g)
            chosen = pool[torch.randperm(len(pool), generator=g)[: self.ways]]
            s_img, q_img = [], []
            for cls in chosen.tolist():
                order = torch.randperm(self.drawings, generator=g)
                s_img += [self.image(cls, d) for d in order[: self.shots].tolist()]
                q_img += [self.image(cls, d) for d in order[self.shots : self.shots + self.query].tolist()]
            sx.append(torch.stack(s_img))
            qx.append(torch.stack(q_img))
            sy.append(torch.arange(self.ways).repeat_interleave(self.shots))
            qy.append(torch.arange(self.ways).repeat_interleave(self.query))
        return TaskBatch(torch.stack(sx).to(dtype), torch.stack(sy), torch.stack(qx).to(dtype), torch.stack(qy))


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


@lru_cache(maxsize=65536)
def _render(family_seed: int, chars_per_alphabet: int, size: int, cls: int, drawing: int) -> torch.Tensor:
    """Rasterise one drawing: jitter the control points, apply a small similarity transform,
    and shade pixels by their distance to the strokes (anti-aliased)."""
    strokes = _character_strokes(family_seed, chars_per_alphabet, cls)
    g = torch.Generator().manual_seed(task_seed(family_seed, 13, cls, drawing))
    pts = strokes + 0.06 * torch.randn(strokes.shape, generator=g, dtype=torch.float64)
    angle = float(_uniform(g, 1, -0.25, 0.25))
    scale = float(_uniform(g, 1, 0.85, 1.1))
    shift = _uniform(g, 2, -0.1, 0.1)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    pts = (pts @ rot.T) * scale + shift
    t = torch.linspace(0, 1, _POINTS_PER_STROKE, dtype=torch.float64).view(1, -1, 1)
    p0, p1, p2 = pts[:, 0:1], pts[:, 1:2], pts[:, 2:3]
    curve = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2).reshape(-1, 2)  # [strokes * P, 2]
    axis = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)  # [S*S, 2] as (x, y)
    dist = torch.cdist(grid, curve).min(1).values
    thickness = _alphabet_thickness(family_seed, cls // chars_per_alphabet)
    ink = ((thickness - dist) / (2.0 / size) + 0.5).clamp(0, 1)
    return ink.view(size, size).float()
