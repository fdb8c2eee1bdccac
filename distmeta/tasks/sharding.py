"""Sharding plans: which global task indices of a meta-step each shard computes."""
from __future__ import annotations

from dataclasses import dataclass

from distmeta.tasks.mixture import Mixture, family_plan
from distmeta.tasks.seeding import TRAIN


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
    """Which task indices each shard computes at a step. ``tasks`` (and ``classes``): the fixed
    contiguous split of :func:`assign`; ``family``: each task goes to a shard that owns its
    family (:func:`distmeta.tasks.mixture.family_plan`), so the split changes from step to step."""

    meta_batch_size: int
    num_shards: int
    shard_by: str = "tasks"
    mixture: Mixture | None = None
    seed: int = 0

    def plan(self, step: int) -> list[list[int]]:
        if self.shard_by == "family":
            if self.mixture is None:
                raise ValueError("shard_by='family' needs the mixture")
            return family_plan(self.mixture, self.seed, TRAIN, step, self.meta_batch_size, self.num_shards)
        return [list(r) for r in assign(self.meta_batch_size, self.num_shards)]
