"""A mixture of task families: which family task ``i`` of step ``s`` comes from, and who computes it.

The family of a task is a pure function of ``(seed, stream, step, index)`` (a hash, not a running
RNG), drawn with probabilities proportional to the families' weights; the task itself is then
sampled by that family from the same key. So a task is the same whichever actor computes it, and
a run's result does not depend on how many actors share the work.
"""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Sequence

from distmeta.tasks.seeding import task_seed

FAMILY_STREAM_OFFSET = 1000
"""The family draw uses stream ``stream + 1000``: independent of the draws the task itself makes."""


@dataclass(frozen=True)
class Mixture:
    """Family names (the labels metrics use) with sampling weights (any positive numbers)."""

    names: tuple[str, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        if not self.names or len(self.names) != len(self.weights):
            raise ValueError(f"a mixture needs one weight per family, got {self.names} and {self.weights}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"family names in a mixture must differ, got {self.names}")
        if any(not w > 0 for w in self.weights):
            raise ValueError(f"family weights must be positive, got {self.weights}")
        object.__setattr__(self, "_cumulative", tuple(itertools.accumulate(self.weights)))

    def family_of(self, seed: int, stream: int, step: int, index: int) -> int:
        """Index into ``names`` of the family task ``index`` of ``step`` is drawn from."""
        if len(self.names) == 1:
            return 0
        u = task_seed(seed, stream + FAMILY_STREAM_OFFSET, step, index) / 2**63  # uniform in [0, 1)
        cumulative = self._cumulative  # type: ignore[attr-defined]
        return min(bisect.bisect_right(cumulative, u * cumulative[-1]), len(self.names) - 1)

    def group(self, seed: int, stream: int, step: int, indices: Sequence[int]) -> dict[int, list[int]]:
        """``indices`` by family (family index -> its task indices, in order); families without tasks omitted."""
        out: dict[int, list[int]] = {}
        for i in indices:
            out.setdefault(self.family_of(seed, stream, step, int(i)), []).append(int(i))
        return dict(sorted(out.items()))


def family_owners(num_families: int, num_shards: int) -> list[list[int]]:
    """Which shards own each family under ``shard_by: family``: with at least as many shards as
    families, shard ``k`` owns family ``k % num_families`` (a family may have several owners);
    with fewer, shard ``k`` owns the families ``f`` with ``f % num_shards == k``."""
    n = max(num_shards, 1)
    if n >= num_families:
        return [[k for k in range(n) if k % num_families == f] for f in range(num_families)]
    return [[f % n] for f in range(num_families)]


def family_plan(mixture: Mixture, seed: int, stream: int, step: int, meta_batch_size: int, num_shards: int) -> list[list[int]]:
    """Per shard, the task indices of ``step`` it computes under ``shard_by: family``: each family's
    tasks go to its owners, split contiguously among them. A shard may get no task at a step."""
    owners = family_owners(len(mixture.names), num_shards)
    plan: list[list[int]] = [[] for _ in range(max(num_shards, 1))]
    for f, idx in mixture.group(seed, stream, step, range(meta_batch_size)).items():
        who = owners[f]
        base, extra = divmod(len(idx), len(who))
        start = 0
        for j, k in enumerate(who):
            size = base + (1 if j < extra else 0)
            plan[k].extend(idx[start : start + size])
            start += size
    return [sorted(p) for p in plan]
