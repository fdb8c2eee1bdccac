"""SIGINT and SIGTERM: a run stops where nothing is lost.

While :func:`handled` is active a signal is either raised at once as :class:`Interrupted` (pure
computation such as loading data or the final evaluation: nothing half-done to lose) or, inside
:func:`deferred`, only recorded: Ray's start-up, the training loop and the end of a run poll
:func:`check` (or :func:`requested`) where stopping is safe. Raising from a signal handler inside
one of Ray's calls turns into a ``SystemError`` from its extension code, and the learner must not
stop halfway through an optimizer step or a checkpoint write, hence the polling.

A second signal exits at once (what a user pressing Ctrl-C twice means). The main thread never
blocks in native code for long while this is active (the waits poll, Ray's teardown runs in a
thread with a deadline), so the handler always gets to run.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop asked by a signal. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way out swallows it. ``step`` and ``checkpoint`` say where a
    training run stopped, once known."""

    def __init__(self, signum: int, step: int | None = None, checkpoint: Path | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class _State:
    def __init__(self) -> None:
        self.active = False
        self.requested: int | None = None
        self.deferring = 0


_state = _State()


def requested() -> int | None:
    """The signal that asked the run to stop, if one did."""
    return _state.requested


def check() -> None:
    """Raise :class:`Interrupted` if a signal asked the run to stop."""
    if _state.active and _state.requested is not None:
        raise Interrupted(_state.requested)


def _handler(signum: int, frame) -> None:
    if _state.requested is not None:  # the second one: the user means now
        os.write(2, f"\ndistmeta: second {signal.Signals(signum).name}: exiting now\n".encode())
        os._exit(128 + signum)
    _state.requested = signum
    if not _state.deferring:
        raise Interrupted(signum)
    os.write(2, f"\ndistmeta: {signal.Signals(signum).name}: stopping at the next safe point\n".encode())


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM handled as the module says, for the duration. Only the main thread can
    own signals; elsewhere (a notebook's worker thread) this changes nothing."""
    if threading.current_thread() is not threading.main_thread() or _state.active:
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _state.active, _state.requested, _state.deferring = True, None, 0
    install()
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.active, _state.requested, _state.deferring = False, None, 0


def install() -> None:
    """(Re)install the handlers: ``ray.init`` puts Ray's own SIGTERM handler in their place (it
    aborts the process), and Lightning its own at the start of fit."""
    if _state.active:
        for s in SIGNALS:
            signal.signal(s, _handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Signals are recorded, not raised: the code inside polls :func:`check` where it can stop."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1


@contextmanager
def immediate() -> Iterator[None]:
    """Inside :func:`deferred`, a stretch of pure computation that a signal may cut at once."""
    check()
    saved, _state.deferring = _state.deferring, 0
    try:
        yield
    finally:
        _state.deferring = saved
