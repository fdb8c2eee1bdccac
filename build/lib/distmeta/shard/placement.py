"""Placing shard actors on a Ray cluster: one placement-group bundle per shard.

Ray would wait forever for resources a cluster does not have; :func:`reserve` checks the request
against the nodes first and fails at once, naming what is missing, and bounds the wait for
resources that exist but are busy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from distmeta.errors import UserError

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
"""Ray's placement-group strategies."""


@dataclass(frozen=True)
class Bundle:
    """What one shard actor reserves."""

    cpus: float
    gpus: float

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in (("CPU", self.cpus), ("GPU", self.gpus)) if v > 0}


def fits(bundle: Bundle, count: int, strategy: str, nodes: list[dict[str, float]]) -> str | None:
    """Why ``count`` bundles cannot be placed on ``nodes`` (each a node's total resources) with
    ``strategy``, or None when they can. Bundles are identical, so a node holds
    ``min(node[r] // bundle[r])`` of them."""
    need = bundle.as_dict()
    if not need:
        return None
    per_node = [min(math.floor(node.get(r, 0.0) / v + 1e-9) for r, v in need.items()) for node in nodes]
    totals = {r: sum(node.get(r, 0.0) for node in nodes) for r in need}
    want = ", ".join(f"{v:g} {r}" for r, v in need.items())
    have = ", ".join(f"{totals[r]:g} {r}" for r in need)
    head = f"cluster.num_shards={count} shards of {{{want}}} each (placement {strategy})"
    if strategy == "STRICT_PACK" and max(per_node, default=0) < count:
        return f"{head} must share one node, and no node holds more than {max(per_node, default=0)} of them (cluster: {have})"
    if strategy == "STRICT_SPREAD" and sum(1 for n in per_node if n > 0) < count:
        return f"{head} need {count} nodes with room for one each; {sum(1 for n in per_node if n > 0)} have it (cluster: {have})"
    if sum(per_node) < count:
        missing = ", ".join(f"{count * v:g} {r}" for r, v in need.items() if count * v > totals[r] + 1e-9)
        why = (
            f"need {missing}; the cluster has {have} in all, room for {sum(per_node)} shards"
            if missing
            else f"do not fit: each needs {want} on one node, and the nodes have room for {sum(per_node)} (cluster: {have} in all)"
        )
        return f"{head} {why}. Lower cluster.num_shards or the per-shard resources, or add nodes"
    return None


def reserve(bundle: Bundle, count: int, strategy: str, timeout_s: float):
    """A ready placement group of ``count`` bundles, or :class:`UserError` at once when the
    cluster cannot hold them, or after ``timeout_s`` when its resources stay busy."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    problem = fits(bundle, count, strategy, nodes)
    if problem:
        raise UserError(problem)
    group = placement_group([bundle.as_dict() or {"CPU": 0.001}] * count, strategy=strategy)
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(group)
        raise UserError(
            f"the {count} shard bundles {bundle.as_dict()} ({strategy}) were not placed within {timeout_s:.0f} s: the "
            f"resources exist but are taken (available now: {ray.available_resources()})"
        ) from None
    return group
