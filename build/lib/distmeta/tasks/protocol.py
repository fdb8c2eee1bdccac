"""The open contracts of the task side: what a task family is and what its task data must offer.

A family turns ``(seed, stream, step, indices)`` into task data, deterministically, wherever it
runs. Supervised families return a :class:`~distmeta.tasks.TaskBatch` (support and query sets);
a family whose tasks are environments (meta-RL) will return data its algorithms understand
(trajectories collected by rollouts on the shard that owns the task), through the same
contract: the shard samples, the algorithm computes, the result is a gradient sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class TaskData(Protocol):
    """A batch of tasks: tensors stacked along dim 0, which ``vmap`` maps over."""

    def __len__(self) -> int: ...

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The fields, each ``[T, ...]``, in the order :meth:`from_tensors` takes them."""
        ...

    @classmethod
    def from_tensors(cls, tensors: Sequence[torch.Tensor]) -> TaskData: ...

    def slice(self, start: int, stop: int) -> TaskData: ...

    def unbatched(self, i: int) -> TaskData:
        """One task, without the task dim (an algorithm's per-task methods take this)."""
        ...

    def to(self, device: torch.device | str) -> TaskData: ...

    @staticmethod
    def cat(batches: list[TaskData]) -> TaskData:
        """The tasks of ``batches`` one after another."""
        ...


@runtime_checkable
class TaskFamily(Protocol):
    """A distribution of tasks.

    - ``name``: the label metrics, heads and tables use;
    - ``loss``: the loss its tasks train with (a key of ``distmeta.algorithms.LOSSES``), which also
      names the score it is evaluated by;
    - ``sample``: task data for ``indices`` of ``step`` in ``stream``, a pure function of
      ``(seed, stream, step, index)`` per task;
    - ``with_data``: the family with its data unit attached (the images of a split or class
      part; families that compute their tasks take ``None`` and return themselves);
    - ``check``: raise ``ValueError`` when tasks of these sizes cannot be drawn from its data;
    - ``evaluation_defaults``: the protocol's ``(shots, query)`` when the config leaves them empty.
    """

    name: str

    @property
    def loss(self) -> str: ...

    def sample(self, seed: int, stream: int, step: int, indices: Sequence[int], **sizes: Any) -> TaskData: ...

    def with_data(self, data: Any) -> TaskFamily: ...

    def check(self, *, shots: int | None = None, query: int | None = None, what: str = "") -> None: ...

    def evaluation_defaults(self) -> tuple[tuple[int, ...], int]: ...
