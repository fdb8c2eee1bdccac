"""The task batch that flows from a family to an algorithm."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TaskBatch:
    """``T`` tasks stacked along dim 0.

    ``support_x``: [T, K, in], ``support_y``: [T, K, out], ``query_x``: [T, Q, in], ``query_y``: [T, Q, out].
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def task(self, i: int) -> TaskBatch:
        """Task ``i`` alone, keeping a leading task dim of 1."""
        return TaskBatch(*(t[i : i + 1] for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.support_x, self.support_y, self.query_x, self.query_y

    @staticmethod
    def cat(batches: list[TaskBatch]) -> TaskBatch:
        """The tasks of ``batches`` one after another (shapes beyond the task dim must agree)."""
        if len(batches) == 1:
            return batches[0]
        return TaskBatch(*(torch.cat(ts) for ts in zip(*(b.tensors() for b in batches))))

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch(*(t.to(device) for t in self.tensors()))
