"""A mixture of task families: which family task ``i`` of step ``s`` comes from, and who computes it.

The family of a task is a pure function of ``(seed, stream, step, index)`` (a hash, not a running
RNG), drawn with probabilities proportional to the families' weights; the task itself is then
sampled by that family from the same key. So a task is the same whichever actor computes it, and
a run's result does not depend on how many actors share the work.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from distmeta.tasks.seeding import task_seed

FAMILY_STREAM_OFFSET = 1000
"""The family draw uses stream ``stream + 1000``: independent of the draws the task itself makes."""
PARTITION_STREAM_OFFSET = 2000
"""The class-partition draw (``shard_by: classes``) uses stream ``stream + 2000``."""


SAMPLINGS = ("weighted", "stratified")
"""``tasks.family_sampling``: each task's family drawn by weight, or task ``i`` from family
``i mod F`` (every family alike in every meta-batch, as MMAML's benchmark)."""


@dataclass(frozen=True)
class Mixture:
    """Family names (the labels metrics use) with sampling weights (any positive numbers);
    ``stratified``: the families in turn by task index, weights unused."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    stratified: bool = False

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
        if self.stratified:
            return index % len(self.names)
        u = task_seed(seed, stream + FAMILY_STREAM_OFFSET, step, index) / 2**63  # uniform in [0, 1)
        cumulative = self._cumulative  # type: ignore[attr-defined]
        return min(bisect.bisect_right(cumulative, u * cumulative[-1]), len(self.names) - 1)

    def unit_of(self, seed: int, stream: int, step: int, index: int, partitions: int = 1) -> int:
        """The data unit task ``index`` of ``step`` is drawn from: ``family * partitions + part``,
        where ``part`` (uniform over the family's ``partitions`` class partitions, ``shard_by:
        classes``) is hashed from the same key. With ``partitions=1`` the unit is the family."""
        f = self.family_of(seed, stream, step, index)
        if partitions == 1:
            return f
        return f * partitions + task_seed(seed, stream + PARTITION_STREAM_OFFSET, step, index) % partitions

    def group(self, seed: int, stream: int, step: int, indices: Sequence[int], partitions: int = 1) -> dict[int, list[int]]:
        """``indices`` by unit (:meth:`unit_of`; with ``partitions=1`` by family), in order; units
        without tasks omitted."""
        out: dict[int, list[int]] = {}
        for i in indices:
            out.setdefault(self.unit_of(seed, stream, step, int(i), partitions), []).append(int(i))
        return dict(sorted(out.items()))


def unit_owners(num_units: int, num_shards: int) -> list[list[int]]:
    """Which shards own each data unit (a family under ``shard_by: family``, one class partition
    of a family under ``classes``): with at least as many shards as units, shard ``k`` owns unit
    ``k % num_units`` (a unit may have several owners); with fewer, shard ``k`` owns the units
    ``u`` with ``u % num_shards == k``."""
    n = max(num_shards, 1)
    if n >= num_units:
        return [[k for k in range(n) if k % num_units == u] for u in range(num_units)]
    return [[u % n] for u in range(num_units)]


def owner_plan(
    mixture: Mixture, seed: int, stream: int, step: int, meta_batch_size: int, num_shards: int, partitions: int = 1
) -> list[list[int]]:
    """Per shard, the task indices of ``step`` it computes when shards own data units: each unit's
    tasks go to its owners, split contiguously among them. A shard may get no task at a step."""
    owners = unit_owners(len(mixture.names) * partitions, num_shards)
    plan: list[list[int]] = [[] for _ in range(max(num_shards, 1))]
    for u, idx in mixture.group(seed, stream, step, range(meta_batch_size), partitions).items():
        who = owners[u]
        base, extra = divmod(len(idx), len(who))
        start = 0
        for j, k in enumerate(who):
            size = base + (1 if j < extra else 0)
            plan[k].extend(idx[start : start + size])
            start += size
    return [sorted(p) for p in plan]
