"""``Kept``: what a shard prepared at a meta-step's first weights, for the step's later outer epochs."""

from __future__ import annotations

from collections.abc import Sequence


class Kept:
    """What :meth:`Algorithm.prepare` made of a shard's tasks at a meta-step's first weights
    (collected trajectories), kept for the step's later outer epochs
    (:attr:`Algorithm.outer_epochs`), so that they stay on the actor that collected them. Only
    the latest step's are kept."""

    def __init__(self):
        self._entries: dict[tuple, object] = {}

    @staticmethod
    def key(step: int, slot: int, family: str, indices: Sequence[int]) -> tuple:
        return (step, slot, family, tuple(int(i) for i in indices))

    def get(self, key: tuple):
        return self._entries.get(key)

    def put(self, key: tuple, data) -> None:
        self._entries = {k: v for k, v in self._entries.items() if k[0] == key[0]}
        self._entries[key] = data
