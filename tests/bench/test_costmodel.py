"""The step-cost model: the ring all-reduce's closed form against a ring walked chunk by chunk, the
fits recovering the constants they were given, and each mode's parts."""

import math

import pytest

from distmeta.bench import costmodel
from distmeta.bench.costmodel import BYTES, Costs, Link

LINK = Link("test", latency_s=20e-6, bandwidth=3e9)


def ring_walk_s(link: Link, payload: float, n: int) -> float:
    """A ring all-reduce step by step: reduce-scatter then all-gather, each ``n - 1`` rounds in
    which every rank passes one ``payload / n`` chunk to its neighbour."""
    total, chunk = 0.0, payload / n
    for _phase in ("reduce-scatter", "all-gather"):
        for _round in range(n - 1):
            total += link.latency_s + chunk / link.bandwidth
    return total


@pytest.mark.parametrize("n", [1, 2, 3, 8, 64])
def test_the_all_reduce_time_is_the_ring_walked_chunk_by_chunk(n):
    payload = 12_427_525 * BYTES
    assert math.isclose(costmodel.allreduce_s(LINK, payload, n), ring_walk_s(LINK, payload, n), rel_tol=1e-12)


def test_a_link_fitted_to_ring_times_recovers_its_latency_and_bandwidth():
    sizes = [1e3, 1e5, 1e6, 1e7, 5e7]
    for n in (2, 4):
        fitted = costmodel.fit_link("fit", n, sizes, [ring_walk_s(LINK, s, n) for s in sizes])
        assert math.isclose(fitted.latency_s, LINK.latency_s, rel_tol=1e-6)
        assert math.isclose(fitted.bandwidth, LINK.bandwidth, rel_tol=1e-6)
    with pytest.raises(ValueError, match="2 or more ranks"):
        costmodel.fit_link("fit", 1, sizes, [0.0] * len(sizes))


def test_the_exchange_fit_recovers_its_line_and_a_single_count_or_a_falling_fit_gives_the_mean():
    counts = [1, 2, 4, 8]
    assert costmodel.fit_exchange(counts, [0.003 + 0.0005 * n for n in counts]) == pytest.approx((0.003, 0.0005))
    assert costmodel.fit_exchange([2, 2], [0.01, 0.03]) == pytest.approx((0.02, 0.0))
    assert costmodel.fit_exchange([1, 2, 4], [0.024, 0.004, 0.007]) == pytest.approx((0.035 / 3, 0.0))  # falling: the mean


COSTS = Costs("w", params=1_000_000, task_s=0.05, apply_s=0.004, exchange_s=(0.002, 0.0003), families=2)


def test_each_modes_parts_are_their_formulas_and_add_up():
    n, m = 4, 3
    ar = costmodel.step_s(COSTS, LINK, n, m)
    assert ar["compute"] == pytest.approx(m * 0.05) and ar["exchange"] == pytest.approx(0.002 + 0.0003 * n)
    assert ar["all_reduce"] == pytest.approx(ring_walk_s(LINK, 2 * 1_000_000 * BYTES, n))
    ln = costmodel.step_s(COSTS, LINK, n, m, mode="learner")
    weights = 1_000_000 * BYTES
    expected_io = (n + 1) * weights / COSTS.learner_bandwidth + n * 2 * weights / COSTS.learner_memory_bandwidth
    assert ln["learner_io"] == pytest.approx(expected_io) and "all_reduce" not in ln
    for parts in (ar, ln):
        assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))
    with pytest.raises(ValueError, match="learner or allreduce"):
        costmodel.step_s(COSTS, LINK, n, m, mode="ring")


def test_efficiency_is_one_on_one_device_and_grows_with_the_tasks_per_device():
    assert costmodel.efficiency(COSTS, LINK, 1, 2) == pytest.approx(1.0)
    by_tasks = [costmodel.efficiency(COSTS, LINK, 64, m) for m in (1, 2, 4, 8)]
    assert all(0 < e < 1 for e in by_tasks) and by_tasks == sorted(by_tasks)
    assert costmodel.gpu_link(8) is costmodel.GPU_LINKS["nvlink"] and costmodel.gpu_link(16) is costmodel.GPU_LINKS["network"]
