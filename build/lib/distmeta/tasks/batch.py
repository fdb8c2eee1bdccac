"""The task data of supervised families: support and query sets, stacked over tasks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TaskBatch:
    """``T`` tasks stacked along dim 0 (or, inside an algorithm, one task without that dim).

    ``support_x``: [T, K, in], ``support_y``: [T, K, out], ``query_x``: [T, Q, in], ``query_y``: [T, Q, out].
    It satisfies :class:`distmeta.tasks.protocol.TaskData`.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.support_x, self.support_y, self.query_x, self.query_y

    @classmethod
    def from_tensors(cls, tensors: Sequence[torch.Tensor]) -> TaskBatch:
        return cls(*tensors)

    def slice(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start..stop-1``, keeping the task dim."""
        return TaskBatch(*(t[start:stop] for t in self.tensors()))

    def unbatched(self, i: int) -> TaskBatch:
        """Task ``i`` alone, without the task dim (what an algorithm's per-task methods take)."""
        return TaskBatch(*(t[i] for t in self.tensors()))

    @staticmethod
    def cat(batches: list[TaskBatch]) -> TaskBatch:
        """The tasks of ``batches`` one after another (shapes beyond the task dim must agree)."""
        if len(batches) == 1:
            return batches[0]
        return TaskBatch(*(torch.cat(ts) for ts in zip(*(b.tensors() for b in batches))))

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch(*(t.to(device) for t in self.tensors()))
