"""A collective group among shard actors: torch.distributed's gloo process group, without the
global default group.

Why not ``ray.util.collective``: in Ray 2.60 its CPU backend (``torch_gloo``) initialises the
process-wide default group once per process and publishes the rendezvous in Ray's internal KV;
after a lost member the group must be torn down and rebuilt with a replacement, which the
default group makes awkward (one per process, destroyed globally). A standalone
``ProcessGroupGloo`` over a ``TCPStore`` is an object: tearing it down is dropping it, and each
rebuild is a new generation under its own store prefix. Rank 0 hosts the store; the learner hands
its address to the others (the rendezvous goes through Ray calls, nothing else is shared).

Sums are deterministic for a fixed group and payload (gloo's algorithm and chunking depend only
on them), and every rank receives the same bits.
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist


class StoreHost:
    """The rendezvous store, on rank 0's process: its ``port`` is handed to the other ranks."""

    def __init__(self, timeout_s: float):
        self.store = dist.TCPStore("0.0.0.0", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=timeout_s))

    @property
    def port(self) -> int:
        return self.store.port


class Collective:
    """Rank ``rank`` of ``world`` in generation ``generation`` of a group whose store listens at
    ``host:port`` (``store``: rank 0 passes its own), talking from this node's address ``me``
    (the one the other nodes reach it at; a resolved hostname may be a loopback alias). Joining
    blocks until every rank has joined; a collective that a member misses raises after
    ``timeout_s``."""

    def __init__(self, host: str, port: int, rank: int, world: int, generation: int, timeout_s: float, me: str,
                 store: dist.Store | None = None):  # fmt: skip
        timeout = timedelta(seconds=timeout_s)
        base = store if store is not None else dist.TCPStore(host, port, is_master=False, timeout=timeout)
        self.rank, self.world, self.generation = rank, world, generation
        self._store = dist.PrefixStore(f"distmeta/{generation}", base)
        options = dist.ProcessGroupGloo._Options()
        options._devices = [dist.ProcessGroupGloo.create_device(hostname=me)]
        options._timeout = timeout
        self._group = dist.ProcessGroupGloo(self._store, rank, world, options)

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` (a contiguous CPU tensor) over the ranks, in place."""
        if self.world > 1:
            self._group.allreduce([tensor]).wait()
        return tensor

    def broadcast_(self, tensor: torch.Tensor, root: int = 0) -> torch.Tensor:
        """``root``'s ``tensor`` on every rank, in place."""
        if self.world > 1:
            opts = dist.BroadcastOptions()
            opts.rootRank = root
            self._group.broadcast([tensor], opts).wait()
        return tensor
