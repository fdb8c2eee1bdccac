"""The wire: weights out and back in are the same numbers, read-only arrays are copied, and the
learner's flat gradient lands on the right parameters."""

from __future__ import annotations

import numpy as np
import torch

from distmeta.models import MLP
from distmeta.shard import wire


def test_weights_round_trip_through_a_read_only_array():
    net = MLP(1, (4, 3), 1)
    params = dict(net.named_parameters())
    flat = wire.weights_out(params)
    array = wire.as_array(flat).copy()
    array.setflags(write=False)  # as it arrives from Ray's object store
    back = wire.weights_in(array, {k: p.detach() for k, p in params.items()}, torch.device("cpu"))
    for k, p in params.items():
        assert torch.equal(back[k], p.detach())
    back["head.bias"].add_(1.0)  # a copy: writable, and the sender's weights are untouched
    assert not np.shares_memory(array, back["head.bias"].numpy()) and torch.equal(wire.weights_out(params), flat)


def test_grads_out_and_in_keep_parameter_order():
    net = MLP(1, (2,), 1)
    params = dict(net.named_parameters())
    grads = {k: torch.full_like(p, float(i)) for i, (k, p) in enumerate(params.items())}
    flat = wire.grads_out(grads)
    assert flat.shape == (sum(p.numel() for p in params.values()),)
    for k, g in wire.grads_in(flat, params).items():
        assert torch.equal(g, grads[k]) and g.shape == params[k].shape


def test_packed_family_gradients_are_one_array_and_come_back_writable():
    grads = {"sine": torch.randn(5), "linear": torch.randn(5)}
    families, packed = wire.pack_grads(grads)
    assert families == ("sine", "linear") and packed.shape == (2, 5)
    packed.setflags(write=False)
    back = wire.unpack_grads(families, packed)
    back["sine"].add_(1.0)
    assert torch.allclose(back["sine"] - 1.0, grads["sine"]) and torch.equal(back["linear"], grads["linear"])
