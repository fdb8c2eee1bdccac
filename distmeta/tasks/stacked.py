"""A dataclass of tensors stacked over tasks: the slicing, concatenation and device moves every
kind of task data needs (:class:`~distmeta.tasks.protocol.TaskData`), written once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TypeVar

import torch

S = TypeVar("S", bound="Stacked")


@dataclass(frozen=True)
class Stacked:
    """Subclass as a frozen dataclass whose fields are all tensors with the task dim first (or,
    inside an algorithm's per-task methods, one task without it)."""

    def __len__(self) -> int:
        return self.tensors()[0].shape[0]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    @classmethod
    def from_tensors(cls: type[S], tensors: Sequence[torch.Tensor]) -> S:
        return cls(*tensors)

    def slice(self: S, start: int, stop: int) -> S:
        """Tasks ``start..stop-1``, keeping the task dim."""
        return type(self)(*(t[start:stop] for t in self.tensors()))

    def unbatched(self: S, i: int) -> S:
        """Task ``i`` alone, without the task dim (what an algorithm's per-task methods take)."""
        return type(self)(*(t[i] for t in self.tensors()))

    @classmethod
    def cat(cls: type[S], batches: list[S]) -> S:
        """The tasks of ``batches`` one after another (shapes beyond the task dim must agree)."""
        if len(batches) == 1:
            return batches[0]
        return type(batches[0])(*(torch.cat(ts) for ts in zip(*(b.tensors() for b in batches))))

    def to(self: S, device: torch.device | str) -> S:
        return type(self)(*(t.to(device) for t in self.tensors()))
