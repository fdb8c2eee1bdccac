"""A co-located shard's fast path: its requests and results over a Unix socket, not Ray calls.

A Ray actor call has a fixed cost before any work (task submission, scheduling on the actor, the
reply through Ray's core worker) as large as a small model's meta-step (docs/performance.md). A shard
actor on the learner's node also serves the same ``compute`` on a Unix socket, from a thread of
its own; the learner sends length-prefixed pickles (protocol 5) and blocks on the reply. Ray
still places, restarts and kills the actors, and carries every call the channel cannot: remote
nodes, recomputation after a failure, another shard's data. No ray import here.
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import socket
import struct
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from distmeta import interrupts

POLL_S = 0.25
"""How often a wait looks for a stop request (:mod:`distmeta.interrupts`)."""

_LENGTH = struct.Struct("<Q")


class ChannelError(ConnectionError):
    """The channel broke (the peer died, closed it, or missed the deadline)."""


class ChannelTimeout(ChannelError):
    """No reply before the deadline: the shard may be hung rather than dead."""


def send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=5)
    sock.sendall(_LENGTH.pack(len(data)))
    sock.sendall(data)


def receive(sock: socket.socket) -> Any:
    (n,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size))
    return pickle.loads(_exactly(sock, n))


def _exactly(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise ChannelError("the shard closed its channel")
        got += k
    return buf


class ChannelServer:
    """In the shard's process: accepts the learner's connection on a socket in a private
    directory and answers each request ``args`` with ``("ok", handler(*args))`` or
    ``("error", traceback text)``. ``on_thread`` runs first in the serving thread (torch's thread
    count is per OS thread)."""

    def __init__(self, handler: Callable[..., Any], on_thread: Callable[[], None] = lambda: None):
        self.dir = tempfile.mkdtemp(prefix="distmeta-shard-")  # mode 0700: only this user connects
        self.path = os.path.join(self.dir, "socket")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        threading.Thread(target=self._serve, args=(handler, on_thread), name="distmeta-channel", daemon=True).start()

    def _serve(self, handler, on_thread) -> None:
        on_thread()
        while True:
            conn, _ = self._listener.accept()
            with conn:
                try:
                    while True:
                        args = receive(conn)
                        try:
                            reply = ("ok", handler(*args))
                        except Exception:  # the learner raises it, as Ray would raise the call's error
                            reply = ("error", traceback.format_exc())
                        send(conn, reply)
                except (ChannelError, OSError):
                    continue  # the learner went away: wait for the next one


class ChannelClient:
    """In the learner: one connection to a shard's :class:`ChannelServer`."""

    def __init__(self, path: str, timeout_s: float = 60.0):
        self.path = path
        self.timeout_s = timeout_s
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        self._sock.connect(path)

    def request(self, *args: Any) -> None:
        """Send a request; a frozen shard cannot block it past ``timeout_s`` (a large one fills
        the socket's buffer until the shard reads it)."""
        try:
            self._sock.settimeout(self.timeout_s)
            send(self._sock, args)
        except OSError as exc:  # socket.timeout included
            raise ChannelError(f"sending to the shard failed: {exc}") from None

    def reply(self, deadline: float) -> Any:
        """The answer to the oldest request, waiting until ``deadline`` (``time.monotonic``); a
        stop request raises :class:`distmeta.interrupts.Interrupted` meanwhile."""
        try:
            while not select.select([self._sock], [], [], max(0.0, min(POLL_S, deadline - time.monotonic())))[0]:
                interrupts.check()
                if time.monotonic() >= deadline:
                    raise TimeoutError
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            status, value = receive(self._sock)
        except TimeoutError:
            raise ChannelTimeout("no answer before the step timeout") from None
        except OSError as exc:
            raise ChannelError(f"receiving from the shard failed: {exc}") from None
        if status == "error":
            raise RuntimeError(f"shard computation failed:\n{value}")
        return value

    def close(self) -> None:
        try:
            self._sock.close()
        finally:  # the server's private directory (same node, same filesystem)
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)
