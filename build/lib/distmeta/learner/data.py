"""Lightning needs a dataloader to drive its loop; the meta-step index is the learner's global step,
so the data here carries no information (tasks are sampled by the shards from ``(seed, step, i)``)."""

from __future__ import annotations

import itertools

from torch.utils.data import DataLoader, IterableDataset


class _Ticks(IterableDataset):
    def __iter__(self):
        return itertools.count()


class _Once(IterableDataset):
    def __iter__(self):
        return iter([0])


def train_loader() -> DataLoader:
    """Endless ticks; ``trainer.max_steps`` ends training."""
    return DataLoader(_Ticks(), batch_size=None)


def val_loader() -> DataLoader:
    """One tick per validation run (the validation step evaluates its whole held-out task set)."""
    return DataLoader(_Once(), batch_size=None)
