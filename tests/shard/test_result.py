import dataclasses
import pickle

import pytest
import torch

from distmeta.shard.result import ShardResult


def test_result_travels_as_one_array_and_comes_back_equal():
    grads = {"sine": torch.randn(7), "linear": torch.randn(7)}
    r = ShardResult(
        1, 4, 4, grads, {"sine": 2, "linear": 3}, {"sine": {"loss": 1.0}, "linear": {"loss": 2.0}}, 0.5, sample_seconds=0.1
    )
    _, (fields, families, packed) = r.__reduce__()
    assert "family_grads" not in fields and families == ("sine", "linear") and packed.shape == (2, 7)  # one buffer
    back = pickle.loads(pickle.dumps(r))
    assert list(back.family_grads) == ["sine", "linear"]  # family order kept
    for f in grads:
        assert torch.equal(back.family_grads[f], grads[f])
        back.family_grads[f].add_(1.0)  # writable: the learner may add into it
    with pytest.raises(dataclasses.FrozenInstanceError):  # a result is never edited after it arrives
        back.shard = 0
    assert (back.shard, back.step, back.family_counts, back.family_metrics, back.sample_seconds) == (
        1,
        4,
        {"sine": 2, "linear": 3},
        r.family_metrics,
        0.1,
    )
