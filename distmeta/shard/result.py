"""The message a shard sends back to the learner each meta-step."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ShardResult:
    """What one shard computed for one meta-step, per task family.

    ``family_grads[f]`` is the flat (contiguous, parameter order) sum over the shard's tasks of
    family ``f`` of each task's meta-gradient; ``family_metrics[f]`` are sums over those tasks too.
    The learner divides by task counts (and weighs families as configured), so results combine
    exactly however the meta-batch was split. ``weights_version`` names the weights the gradients
    were computed against: the learner never applies a result for another version.
    """

    shard: int
    step: int
    weights_version: int
    family_grads: dict[str, torch.Tensor]
    family_counts: dict[str, int]
    family_metrics: dict[str, dict[str, float]]
    seconds: float
    worker: dict[str, str] = field(default_factory=dict)
    sample_seconds: float = 0.0
    """Of ``seconds``, the time spent sampling the tasks (the rest is the meta-gradient)."""

    def __getstate__(self) -> dict:
        """On the wire (a Ray actor's answer) the family gradients travel as one contiguous float
        array, which Ray's serializer hands over as a single buffer: measured on the sine bench,
        a dict of tensors cost 0.4-1 ms more per call (torch's own pickling)."""
        state = dict(self.__dict__)
        grads = state.pop("family_grads")
        state["_families"] = tuple(grads)
        state["_grads"] = np.stack([g.detach().cpu().numpy() for g in grads.values()]) if grads else None
        return state

    def __setstate__(self, state: dict) -> None:
        families, packed = state.pop("_families"), state.pop("_grads")
        # object-store buffers are read-only; the learner adds into its own sums, so one copy here
        rows = torch.from_numpy(np.array(packed)) if packed is not None else ()
        state["family_grads"] = dict(zip(families, rows))
        self.__dict__.update(state)

    @property
    def task_count(self) -> int:
        return sum(self.family_counts.values())

    @property
    def grad_sum(self) -> torch.Tensor:
        """The sum over all of the shard's tasks, whatever their family."""
        grads = list(self.family_grads.values())
        total = grads[0].clone()
        for g in grads[1:]:
            total += g
        return total

    @property
    def metrics(self) -> dict[str, float]:
        """Metric sums over all of the shard's tasks."""
        out: dict[str, float] = {}
        for per_family in self.family_metrics.values():
            for k, v in per_family.items():
                out[k] = out.get(k, 0.0) + v
        return out
