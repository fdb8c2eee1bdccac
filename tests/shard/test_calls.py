"""The step's call state machine against an in-test transport (the interface it is written
against): retries move a shard to the next host, give up after max attempts, record suspects,
and a healthy step needs one send per shard."""

from __future__ import annotations

import pytest

from distmeta.shard.calls import Lost, Request, StepCalls
from distmeta.shard.group import FaultCounters
from distmeta.shard.result import ShardResult
from distmeta.shard.wire import Traffic


class Hosts:
    """Ray-call-only transport over ``n`` hosts; ``dead`` hosts' calls come back lost."""

    timeout_s = 5.0

    def __init__(self, n: int, dead=()):
        self.n, self.dead, self.faults, self.sent = n, set(dead), FaultCounters(), []
        self.traffic = Traffic()

    def host(self, k, attempt):
        return (k + attempt) % self.n

    def data_for(self, k, host):
        return ()

    def channel(self, host):
        return None

    def drop_channel(self, host):
        pass

    def call(self, host, request, indices, slot, data):
        self.sent.append((slot, host))
        return (slot, host, len(self.sent))

    def fetch(self, ref):
        slot, host, _ = ref
        if host in self.dead:
            raise Lost("RayActorError")
        return ShardResult(slot, 3, 3, {}, {"sine": 1}, {}, 0.0)


def _run(calls: StepCalls):
    while pending := calls.ray_calls():
        for call in list(pending.values()):
            calls.receive(call)
    return calls.finished()


def test_a_healthy_step_sends_each_shard_once_in_plan_order():
    t = Hosts(3)
    results = _run(StepCalls(t, Request(3, 3, None, None, True), [[0, 1], [], [2]]))
    assert t.sent == [(0, 0), (2, 2)] and [r.shard for r in results] == [0, 2]  # an empty shard is not sent
    assert t.faults == FaultCounters()


def test_a_lost_shard_is_recomputed_on_the_next_host_and_its_host_is_suspected():
    t = Hosts(3, dead={1})
    calls = StepCalls(t, Request(3, 3, None, None, True), [[0], [1, 2], [3]])
    results = _run(calls)
    assert [r.shard for r in results] == [0, 1, 2] and (1, 2) in t.sent  # shard 1 moved from host 1 to host 2
    assert calls.suspects == {1: "died"} and t.faults.failed_attempts == 1 and t.faults.recomputed_tasks == 2


def test_a_shard_that_fails_max_attempts_times_stops_the_step():
    t = Hosts(2, dead={0, 1})
    with pytest.raises(RuntimeError, match="shard 0 failed 3 times at step 3"):
        _run(StepCalls(t, Request(3, 3, None, None, True), [[0]], max_attempts=3))


def test_late_calls_expire_as_hung_and_go_elsewhere():
    t = Hosts(2)
    calls = StepCalls(t, Request(3, 3, None, None, True), [[0], [1]])
    late = calls.expire(now=float("inf"))
    assert len(late) == 2 and calls.suspects == {0: "hung", 1: "hung"}
    assert [r.shard for r in _run(calls)] == [0, 1]


def test_the_learners_bytes_count_every_send_of_inline_weights_and_every_gradient_received():
    """Inline weights travel with each call, a retry's too; each result's gradient rows come back."""
    import numpy as np
    import torch

    class WithGrads(Hosts):
        def fetch(self, ref):
            result = super().fetch(ref)
            return ShardResult(result.shard, 3, 3, {"sine": torch.zeros(7)}, {"sine": 1}, {}, 0.0)

    t = WithGrads(3, dead={1})
    weights = np.zeros(10, dtype=np.float32)
    _run(StepCalls(t, Request(3, 3, weights, weights, True), [[0], [1, 2], [3]]))
    assert t.traffic == Traffic(sent=4 * 40, received=3 * 28)  # shard 1 sent twice (its host died); 3 results
