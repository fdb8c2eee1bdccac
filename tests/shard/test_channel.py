"""The local channel: requests and replies over a Unix socket, errors and hangs reported as the
group expects, and a Ray group using it computes exactly what Ray calls and the local group do."""

import time

import pytest
import torch

from distmeta.shard.actors import ActorResources
from distmeta.shard.channel import ChannelClient, ChannelError, ChannelServer
from distmeta.shard.group import LocalShardGroup
from distmeta.shard.ray_group import RayShardGroup
from tests.shard.helpers import compute, grad_sum
from tests.shard.test_group import _spec


def test_replies_in_order_and_a_new_learner_can_connect():
    server = ChannelServer(lambda a, b: {"sum": a + b, "array": torch.arange(3) * a})
    client = ChannelClient(server.path)
    client.request(1, 2)
    client.request(10, 20)
    assert client.reply(time.monotonic() + 5)["sum"] == 3
    second = client.reply(time.monotonic() + 5)
    assert second["sum"] == 30 and second["array"].tolist() == [0, 10, 20]
    client._sock.close()  # the learner goes away (closing the client would remove the socket)
    again = ChannelClient(server.path)
    again.request(2, 2)
    assert again.reply(time.monotonic() + 5)["sum"] == 4
    again.close()


def test_an_error_in_the_shard_is_raised_in_the_learner_with_its_traceback():
    def handler(step):
        raise ValueError(f"bad step {step}")

    client = ChannelClient(ChannelServer(handler).path)
    client.request(7)
    with pytest.raises(RuntimeError, match="ValueError: bad step 7"):
        client.reply(time.monotonic() + 5)
    client.close()


def test_no_answer_before_the_deadline_is_a_channel_error():
    client = ChannelClient(ChannelServer(lambda s: time.sleep(s)).path)
    client.request(2.0)
    with pytest.raises(ChannelError, match="timeout"):
        client.reply(time.monotonic() + 0.1)
    client.close()


def _sine_step():
    """Weights of the sine MLP and a 10-task plan over 2 shards."""
    from distmeta.models import MLP, flatten
    from distmeta.tasks import assign

    torch.manual_seed(0)
    return flatten({k: p.detach() for k, p in MLP(1, (40, 40), 1).named_parameters()}), [tuple(r) for r in assign(10, 2)]


@pytest.mark.ray
def test_a_ray_group_on_its_channels_equals_ray_calls_and_the_local_group(ray_runtime):
    weights, plan = _sine_step()
    local = compute(LocalShardGroup(_spec()), 4, weights, 4, plan)
    out = {}
    for channel in (True, False):
        group = RayShardGroup(
            _spec(), 2, ActorResources(num_cpus=1, num_gpus=0, max_restarts=0), timeout_s=60, local_channel=channel
        )
        try:
            assert len(group.channels) == (2 if channel else 0)  # one node: every actor is local
            out[channel] = [compute(group, s, weights, s, plan) for s in (4, 5)]
        finally:
            group.close()
    for a, b, c in zip(local, out[True][0], out[False][0]):
        torch.testing.assert_close(grad_sum(b), grad_sum(a), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(grad_sum(b), grad_sum(c), rtol=0, atol=0)
    assert [r.step for r in out[True][1]] == [5, 5]


def test_a_shard_that_never_reads_cannot_block_the_learner():
    """A frozen shard (SIGSTOP) reads nothing: a request larger than the socket's buffer must
    give up after the timeout instead of blocking the learner for good."""
    import socket
    import tempfile

    path = tempfile.mkdtemp() + "/socket"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)  # accepts the connection in the kernel, never reads
    client = ChannelClient(path, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ChannelError, match="sending"):
        client.request(torch.zeros(8 << 20).numpy())  # 32 MiB
    assert time.monotonic() - started < 5
    client.close()
    listener.close()


@pytest.mark.ray
def test_a_shard_error_over_the_channel_is_raised_and_the_next_step_is_still_right(ray_runtime):
    weights, plan = _sine_step()
    group = RayShardGroup(_spec(), 2, ActorResources(num_cpus=1, num_gpus=0, max_restarts=0), timeout_s=60)
    try:
        with pytest.raises(RuntimeError, match="shard computation failed"):
            compute(group, 1, weights[:-3], 1, plan)  # weights of the wrong size
        assert not group.channels  # unread replies would answer later requests: channels dropped
        after = compute(group, 2, weights, 2, plan)  # over Ray calls now
    finally:
        group.close()
    for a, b in zip(compute(LocalShardGroup(_spec()), 2, weights, 2, plan), after):
        torch.testing.assert_close(grad_sum(b), grad_sum(a), rtol=1e-6, atol=1e-7)
