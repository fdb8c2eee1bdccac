"""Sharding plans: which global task indices of a meta-step each shard computes."""
from __future__ import annotations


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
