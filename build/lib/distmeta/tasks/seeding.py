"""Deterministic per-task seeds: task ``i`` of meta-step ``s`` depends only on ``(seed, stream, s, i)``.

The seed is a hash, not a running RNG, so any actor can produce any task without replaying the
stream, and the result does not depend on how the meta-batch was split.
"""

from __future__ import annotations

import hashlib
import struct

import torch

TRAIN, VALIDATION, EVALUATION = 0, 1, 2
"""Streams: disjoint task sequences for meta-training, validation during training, and meta-testing."""


def task_seed(seed: int, stream: int, step: int, index: int) -> int:
    """A 63-bit seed for one task (BLAKE2b of the four integers)."""
    digest = hashlib.blake2b(struct.pack("<qqqq", seed, stream, step, index), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def task_generator(seed: int, stream: int, step: int, index: int, generator: torch.Generator | None = None) -> torch.Generator:
    """A CPU generator seeded for one task (reuses ``generator`` when given, to avoid allocations)."""
    g = generator if generator is not None else torch.Generator()
    g.manual_seed(task_seed(seed, stream, step, index))
    return g
