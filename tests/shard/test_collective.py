"""The collective group the all-reduce replicas use: sums and broadcasts over real gloo process
groups (one per thread here; one per actor in a run), the same bits on every rank, and a member
that never joins the collective is an error after the timeout, not a hang."""

from __future__ import annotations

import threading

import pytest
import torch

from distmeta.shard.collective import Collective, StoreHost, resolve_backend


def _on_ranks(world: int, body, timeout_s: float = 20.0, ranks=None) -> dict:
    host, out = StoreHost(timeout_s), {}

    def run(rank):
        try:
            c = Collective("127.0.0.1", host.port, rank, world, 0, timeout_s, "127.0.0.1", host.store if rank == 0 else None)
            out[rank] = body(c, rank)
        except Exception as exc:  # the test reads it
            out[rank] = exc

    threads = [threading.Thread(target=run, args=(r,)) for r in (ranks if ranks is not None else range(world))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s + 30)
    return out


def test_all_reduce_sums_the_same_bits_on_every_rank_and_broadcast_copies_the_root():
    rows = [torch.randn(4, 1000, generator=torch.Generator().manual_seed(r)) for r in range(3)]

    def body(c, rank):
        summed = c.all_reduce_(rows[rank].clone())
        copied = c.broadcast_(torch.full((3,), float(rank)), root=2)
        return summed, copied

    out = _on_ranks(3, body)
    expected = rows[0] + rows[1] + rows[2]
    for rank in range(3):
        summed, copied = out[rank]
        torch.testing.assert_close(summed, expected, rtol=1e-6, atol=1e-6)
        assert torch.equal(summed, out[0][0]), "every rank holds the same bits"
        assert torch.equal(copied, torch.full((3,), 2.0))


def test_a_missing_member_is_an_error_not_a_hang():
    out = _on_ranks(2, lambda c, rank: c.all_reduce_(torch.ones(3)), timeout_s=2.0, ranks=[0])
    assert isinstance(out[0], Exception), "rank 0 alone cannot form a group of two"


def test_the_backend_is_nccl_only_for_a_replica_on_a_gpu_of_its_own():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu, own_gpu=True) == "gloo"
    assert resolve_backend("gloo", cpu, own_gpu=False) == "gloo"
    with pytest.raises(RuntimeError, match="cluster.collective=nccl: .*use cluster.collective=gloo"):
        resolve_backend("nccl", cpu, own_gpu=True)
    if torch.cuda.is_available() and torch.distributed.is_nccl_available():
        gpu = torch.device("cuda", 0)
        assert resolve_backend("auto", gpu, own_gpu=True) == "nccl"
        assert resolve_backend("auto", gpu, own_gpu=False) == "gloo"  # a shared GPU: one NCCL rank per device
