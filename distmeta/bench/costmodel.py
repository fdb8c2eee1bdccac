"""The cost model of one meta-step in both aggregation modes, for weak scaling: every device
(a GPU, or a CPU shard) computes ``m`` tasks, so the meta-batch grows with the devices.

All-reduce mode (``cluster.aggregation: allreduce``)::

    T_ar(n) = m c + R(n, F P b) + a + e0 + e1 n
    R(n, S) = 2 (n - 1) alpha + 2 (n - 1) / n * S / B      (ring all-reduce; R(1, S) = 0)

Learner mode (every shard's gradient rows to the learner, the weights back out)::

    T_ln(n) = m c + (n + 1) P b / B_l + n F P b / M + a_l + e0 + e1 n

``c``: compute per task (sampling, inner loop, meta-gradient); ``F``: the families reduced (one
row each); ``P``: parameters; ``b``: 4 bytes; ``alpha``/``B``: the collective's latency per ring
hop and bus bandwidth; ``a``: clipping and Adam on the replica; ``e0 + e1 n``: the learner's
per-step exchange of plans and metrics with ``n`` actors (Ray calls); ``B_l``: the learner's
network bandwidth; ``M``: its memory bandwidth (adding up the rows). The scaling efficiency is
``T(1) / T(n)``: 1 when ``n`` devices do ``n`` times the tasks in the same time.

The constants come from measurements (the gloo sweep between Ray actors, the learner's ``time/``
parts) or, where nothing was measured, published figures and stated assumptions:
:data:`GPU_LINKS` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BYTES = 4
"""float32 gradients and weights."""


@dataclass(frozen=True)
class Link:
    """A collective's cost: ``latency_s`` per ring hop, ``bandwidth`` in bytes/s (bus bandwidth,
    as nccl-tests reports it: what each rank's link carries)."""

    name: str
    latency_s: float
    bandwidth: float
    source: str = ""


@dataclass(frozen=True)
class Costs:
    """One workload's constants on one kind of device."""

    name: str
    params: int
    task_s: float  # c
    apply_s: float  # a: the replica's clip + Adam (the learner's in learner mode, a_l)
    exchange_s: tuple[float, float]  # (e0, e1): the learner's per-step calls
    families: int = 1
    learner_bandwidth: float = 12.5e9  # B_l: one 100 Gb/s NIC
    learner_memory_bandwidth: float = 20e9  # M: adding rows on the learner's CPU


def allreduce_s(link: Link, payload: float, n: int) -> float:
    """``R(n, S)``: a ring all-reduce of ``payload`` bytes over ``n`` ranks."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) * link.latency_s + 2 * (n - 1) / n * payload / link.bandwidth


def step_s(costs: Costs, link: Link, n: int, tasks_per_device: int, mode: str = "allreduce") -> dict[str, float]:
    """One step's time on ``n`` devices, by part (seconds) and in all (``total``)."""
    c = costs
    payload = c.families * c.params * BYTES
    parts = {"compute": tasks_per_device * c.task_s, "apply": c.apply_s, "exchange": c.exchange_s[0] + c.exchange_s[1] * n}
    if mode == "allreduce":
        parts["all_reduce"] = allreduce_s(link, payload, n)
    elif mode == "learner":
        parts["learner_io"] = (n + 1) * c.params * BYTES / c.learner_bandwidth + n * payload / c.learner_memory_bandwidth
    else:
        raise ValueError(f"mode {mode!r}: learner or allreduce")
    parts["total"] = sum(parts.values())
    return parts


def efficiency(costs: Costs, link: Link, n: int, tasks_per_device: int, mode: str = "allreduce") -> float:
    """Weak-scaling efficiency ``T(1) / T(n)``."""
    return step_s(costs, link, 1, tasks_per_device, mode)["total"] / step_s(costs, link, n, tasks_per_device, mode)["total"]


def fit_link(name: str, n: int, sizes: list[float], seconds: list[float]) -> Link:
    """``alpha`` and ``B`` by least squares from all-reduce times of ``sizes`` bytes on ``n`` ranks."""
    if n < 2 or len(sizes) < 2:
        raise ValueError("fitting a link needs 2 or more ranks and 2 or more payload sizes")
    hops = 2 * (n - 1)
    a = np.array([[hops, hops / n * s] for s in sizes], dtype=float)
    (alpha, inverse), *_ = np.linalg.lstsq(a, np.array(seconds, dtype=float), rcond=None)
    return Link(name, max(float(alpha), 0.0), 1.0 / max(float(inverse), 1e-30), f"fitted to {len(sizes)} sizes on {n} ranks")


def fit_exchange(counts: list[int], seconds: list[float]) -> tuple[float, float]:
    """``(e0, e1)`` by least squares from the learner's exchange time at ``counts`` actors; a
    falling fit (noise) gives the mean and no slope."""
    if len(set(counts)) < 2:
        return (float(np.mean(seconds)), 0.0)
    e1, e0 = np.polyfit(np.array(counts, dtype=float), np.array(seconds, dtype=float), 1)
    if e1 < 0:  # noise, not a cost that falls with more actors: no slope, the mean
        return (float(np.mean(seconds)), 0.0)
    return (max(float(e0), 0.0), float(e1))


GPU_LINKS = {
    # published, not measured here: nccl-tests all_reduce_perf
    # bus bandwidth at large sizes; the latency per hop is an assumption of the usual order
    "nvlink": Link("NVLink, 8 GPUs in one node", 5e-6, 450e9, "published: 8x H100 SXM NVLink, nccl-tests busbw 460-480 GB/s"),
    "network": Link("between nodes", 10e-6, 35e9, "published: 2 nodes of 8x H200, 4x ConnectX-7 RoCE, nccl-tests busbw ~35 GB/s"),
}
"""The GPU collectives: in one node up to 8 GPUs, beyond that bound by the network."""


def gpu_link(n: int) -> Link:
    """The link a ring of ``n`` GPUs is bound by: NVLink within one node of 8, the network past it."""
    return GPU_LINKS["nvlink"] if n <= 8 else GPU_LINKS["network"]
