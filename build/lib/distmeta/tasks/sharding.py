"""Sharding plans: which global task indices of a meta-step each shard computes."""

from __future__ import annotations

from dataclasses import dataclass

from distmeta.tasks.mixture import Mixture, owner_plan
from distmeta.tasks.seeding import TRAIN

SHARD_BY = ("tasks", "family", "classes")
"""How a meta-batch is split over shards (:class:`Planner`)."""


def assign(meta_batch_size: int, num_shards: int) -> list[range]:
    """Split task indices ``0..meta_batch_size-1`` into ``num_shards`` contiguous, near-equal ranges.

    The plan does not depend on the step: which tasks exist is fixed by ``(seed, step, index)``,
    the plan only says who computes them. ``num_shards=0`` means one in-process "shard".
    """
    n = max(num_shards, 1)
    if meta_batch_size < n:
        raise ValueError(f"meta_batch_size={meta_batch_size} < num_shards={n}")
    base, extra = divmod(meta_batch_size, n)
    out, start = [], 0
    for k in range(n):
        size = base + (1 if k < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


@dataclass(frozen=True)
class Planner:
    """Which task indices each shard computes at a step. ``tasks``: the fixed contiguous split of
    :func:`assign`; ``family`` and ``classes``: each task goes to a shard that owns its data unit
    (its family, or its family's class partition: :func:`distmeta.tasks.mixture.owner_plan`), so
    the split changes from step to step while the tasks themselves do not."""

    meta_batch_size: int
    num_shards: int
    shard_by: str = "tasks"
    mixture: Mixture | None = None
    seed: int = 0
    partitions: int = 1
    """Class partitions per family (``shard_by: classes``)."""

    def plan(self, step: int) -> list[list[int]]:
        if self.shard_by in ("family", "classes"):
            if self.mixture is None:
                raise ValueError(f"shard_by={self.shard_by!r} needs the mixture")
            parts = self.partitions if self.shard_by == "classes" else 1
            return owner_plan(self.mixture, self.seed, TRAIN, step, self.meta_batch_size, self.num_shards, parts)
        return [list(r) for r in assign(self.meta_batch_size, self.num_shards)]
