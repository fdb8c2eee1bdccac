import math

import pytest
import torch

from distmeta.errors import NonFiniteGradientError
from distmeta.learner.aggregate import StaleResultError, aggregate
from distmeta.shard.result import ShardResult


def _result(shard, grad, count, version=3, step=3, loss=1.0):
    return ShardResult(shard=shard, step=step, weights_version=version, grad_sum=torch.tensor(grad),
                       task_count=count, family_counts={"sine": count}, metrics={"loss": loss * count}, seconds=0.1)


def test_task_weighted_mean_over_shards_in_any_arrival_order():
    a = _result(0, [2.0, 4.0], 2, loss=1.0)
    b = _result(1, [3.0, 3.0], 1, loss=4.0)
    agg = aggregate([b, a], step=3, version=3)
    assert torch.allclose(agg.grad, torch.tensor([5.0 / 3, 7.0 / 3]))
    assert agg.task_count == 3 and agg.family_counts == {"sine": 3}
    assert math.isclose(agg.metrics["loss"], (2 * 1.0 + 4.0) / 3)


def test_result_for_other_weights_is_never_applied():
    with pytest.raises(StaleResultError, match="shard 1 answered for step 3 / weights version 2"):
        aggregate([_result(0, [1.0], 1), _result(1, [1.0], 1, version=2)], step=3, version=3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_names_step_shard_family(bad):
    with pytest.raises(NonFiniteGradientError, match="at step 3 from shard 1 \\(families sine\\)"):
        aggregate([_result(0, [1.0], 1), _result(1, [bad], 1)], step=3, version=3)
