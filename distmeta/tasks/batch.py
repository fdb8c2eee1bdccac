"""The task data of supervised families: support and query sets, stacked over tasks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distmeta.tasks.stacked import Stacked


@dataclass(frozen=True)
class TaskBatch(Stacked):
    """``T`` tasks stacked along dim 0 (or, inside an algorithm, one task without that dim).

    ``support_x``: [T, K, in], ``support_y``: [T, K, out], ``query_x``: [T, Q, in], ``query_y``: [T, Q, out].
    It satisfies :class:`distmeta.tasks.protocol.TaskData`.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
