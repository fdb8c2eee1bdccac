"""A collective group among shard actors: a torch.distributed process group (gloo, or NCCL where
every actor owns its GPU), without the global default group.

Why not ``ray.util.collective``: in Ray 2.60 its CPU backend (``torch_gloo``) initialises the
process-wide default group once per process and publishes the rendezvous in Ray's internal KV;
after a lost member the group must be torn down and rebuilt with a replacement, which the
default group makes awkward (one per process, destroyed globally). A standalone
``ProcessGroupGloo`` over a ``TCPStore`` is an object: tearing it down is dropping it, and each
rebuild is a new generation under its own store prefix. Rank 0 hosts the store; the learner hands
its address to the others (the rendezvous goes through Ray calls, nothing else is shared).

Sums are deterministic for a fixed group and payload (gloo's algorithm and chunking depend only
on them; NCCL's ring, for a fixed group on fixed hardware), and every rank receives the same bits.

``cluster.collective`` picks the backend: ``gloo`` reduces CPU tensors (a GPU replica copies its
rows to the host and back); ``nccl`` reduces the rows where they are, GPU to GPU, and needs every
actor on a GPU of its own (NCCL refuses two ranks on one device); ``auto`` is NCCL when each
shard reserves a whole GPU and CUDA and NCCL are there, else gloo. Every rank resolves it in its
own process and the group checks they agree.
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


BACKENDS = ("auto", "gloo", "nccl")
"""``cluster.collective``."""


def resolve_backend(name: str, device: torch.device, own_gpu: bool) -> str:
    """The backend this rank uses for ``cluster.collective=name``, its replica on ``device``
    (``own_gpu``: the shard reserves a whole GPU)."""
    nccl_here = device.type == "cuda" and dist.is_nccl_available()
    if name == "auto":
        return "nccl" if nccl_here and own_gpu else "gloo"
    if name == "nccl" and not nccl_here:
        why = "this torch is built without NCCL" if not dist.is_nccl_available() else f"the replica is on {device}"
        raise RuntimeError(f"cluster.collective=nccl: {why}; use cluster.collective=gloo")
    return name


class Collective:
    """Rank ``rank`` of ``world`` in generation ``generation`` of a group whose store listens at
    ``host:port`` (``store``: rank 0 passes its own), talking from this node's address ``me``
    (the one the other nodes reach it at; a resolved hostname may be a loopback alias). Joining
    blocks until every rank has joined; a collective that a member misses raises after
    ``timeout_s``. ``backend``: ``gloo`` (CPU tensors) or ``nccl`` (tensors on ``device``, this
    rank's own GPU)."""

    def __init__(self, host: str, port: int, rank: int, world: int, generation: int, timeout_s: float, me: str,
                 store: dist.Store | None = None, backend: str = "gloo",
                 device: torch.device | None = None):  # fmt: skip
        timeout = timedelta(seconds=timeout_s)
        base = store if store is not None else dist.TCPStore(host, port, is_master=False, timeout=timeout)
        self.rank, self.world, self.generation, self.backend = rank, world, generation, backend
        self.device = device if backend == "nccl" and device is not None else torch.device("cpu")
        self._store = dist.PrefixStore(f"distmeta/{generation}", base)
        if backend == "nccl":
            torch.cuda.set_device(self.device)
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            options.group_name = f"distmeta/{generation}"
            self._group = dist.ProcessGroupNCCL(self._store, rank, world, options)
            return
        options = dist.ProcessGroupGloo._Options()
        options._devices = [dist.ProcessGroupGloo.create_device(hostname=me)]
        options._timeout = timeout
        self._group = dist.ProcessGroupGloo(self._store, rank, world, options)

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` (contiguous, on :attr:`device`) over the ranks, in place."""
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

    def close(self) -> None:
        """Leave the group. NCCL's communicators hold GPU memory and a watchdog thread until
        aborted; a gloo group closes its connections when dropped (its peers' waits fail then)."""
        if self.backend == "nccl":
            self._group.abort()
