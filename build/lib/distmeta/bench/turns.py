"""Turns between the bench's mode processes: one computes, the others wait; and each mode's clock,
which records a block of meta-steps and hands the turn on."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytorch_lightning as pl

_SPAWN = multiprocessing.get_context("spawn")  # no fork: the parent may hold Ray's threads


class Turns:
    """Round-robin turns between the modes' processes (or threads): one computes, the others
    wait. A mode that finished or failed is skipped."""

    def __init__(self, count: int):
        self._cond = _SPAWN.Condition()
        self._current = _SPAWN.Value("i", 0, lock=False)  # guarded by _cond
        self._active = _SPAWN.Array("b", [1] * count, lock=False)

    def wait(self, i: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._current.value == i)

    def pass_on(self, i: int, finished: bool = False) -> None:
        """Hand the turn to the next active mode; ``finished``: ``i`` takes no more turns (a mode
        that fails before its first turn only leaves, the turn stays where it is)."""
        with self._cond:
            if finished:
                self._active[i] = 0
            if self._current.value != i:
                return
            n = len(self._active)
            nxt = next(((i + j) % n for j in range(1, n + 1) if self._active[(i + j) % n]), None)
            self._current.value = -1 if nxt is None else nxt
            self._cond.notify_all()


@dataclass
class Clock:
    """One mode's blocks: ``tick()`` after each meta-step; at a block's end it records the block
    and hands the turn on, and returns when the turn comes back."""

    index: int
    turns: Turns
    steps: int
    blocks: int
    parts: Callable[[], dict[str, float]]
    """Cumulative seconds per part of a step, as the mode measures them."""
    block_seconds: list[float] = field(default_factory=list)
    block_parts: list[dict[str, float]] = field(default_factory=list)
    _in_block: int = 0
    _started: float = 0.0
    _parts_at_start: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.turns.wait(self.index)
        self._begin()

    def _begin(self) -> None:
        self._in_block = 0
        self._parts_at_start = dict(self.parts())
        self._started = time.perf_counter()

    def tick(self) -> None:
        if len(self.block_seconds) > self.blocks:  # past the last block (the run's logged extra step)
            return
        self._in_block += 1
        if self._in_block < self.steps:
            return
        self.block_seconds.append(time.perf_counter() - self._started)
        now = self.parts()
        self.block_parts.append({k: v - self._parts_at_start.get(k, 0.0) for k, v in now.items()})
        if len(self.block_seconds) == self.blocks + 1:  # block 0 warms up; the thread passes on when it ends
            return
        self.turns.pass_on(self.index)
        self.turns.wait(self.index)
        self._begin()


class StepTimer(pl.Callback):
    """Ticks the clock after every meta-step and measures Lightning's own share: the time between
    one training step's end and the next one's start (loop, callbacks, checkpoint checks)."""

    def __init__(self):
        self.clock: Clock | None = None
        self.lightning_s = 0.0
        self._ended: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._ended is not None:
            self.lightning_s += time.perf_counter() - self._ended

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.clock.tick()
        self._ended = time.perf_counter()  # after the tick: a wait for the turn is nobody's time
