import math

import pytest
import torch

from distmeta.errors import NonFiniteGradientError
from distmeta.shard.aggregate import StaleResultError, aggregate
from distmeta.shard.result import ShardResult


def _result(shard, grad, count, version=3, step=3, loss=1.0, family="sine"):
    return ShardResult(
        shard=shard,
        step=step,
        weights_version=version,
        family_grads={family: torch.tensor(grad)},
        family_counts={family: count},
        family_metrics={family: {"loss": loss * count}},
        seconds=0.1,
    )


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
    with pytest.raises(NonFiniteGradientError, match="at step 3 from shard 1 \\(family sine\\)"):
        aggregate([_result(0, [1.0], 1), _result(1, [bad], 1)], step=3, version=3)


def _two_families():
    a = ShardResult(
        0,
        3,
        3,
        {"sine": torch.tensor([3.0, 0.0]), "linear": torch.tensor([0.0, 2.0])},
        {"sine": 3, "linear": 1},
        {"sine": {"loss": 3.0}, "linear": {"loss": 4.0}},
        0.1,
    )
    b = ShardResult(1, 3, 3, {"linear": torch.tensor([0.0, 4.0])}, {"linear": 1}, {"linear": {"loss": 2.0}}, 0.1)
    return [a, b]


@pytest.mark.parametrize(
    "weighting, expected",
    [
        ("count", [3.0 / 5, 6.0 / 5]),  # all 5 tasks alike
        ("uniform", [0.5 * 3.0 / 3, 0.5 * 6.0 / 2]),  # mean of the two family means
        ("weights", [0.25 * 3.0 / 3, 0.75 * 6.0 / 2]),  # loss weights 1 (sine) and 3 (linear)
        ("normalized", [1.0, 1.0]),  # the halved family means [0.5, 0], [0, 1.5] both at norm 1
        ("pcgrad", [0.5 * 3.0 / 3, 0.5 * 6.0 / 2]),  # orthogonal: nothing to project, as uniform
    ],
)
def test_family_weightings(weighting, expected):
    agg = aggregate(_two_families(), step=3, version=3, weighting=weighting, loss_weights={"sine": 1.0, "linear": 3.0})
    torch.testing.assert_close(agg.grad, torch.tensor(expected))
    assert agg.family_counts == {"linear": 2, "sine": 3} and agg.task_count == 5
    assert agg.family_metrics == {"linear": {"loss": 3.0}, "sine": {"loss": 1.0}}
    assert math.isclose(agg.metrics["loss"], 9.0 / 5)
    assert math.isclose(sum(agg.family_shares.values()), 1.0)
    # the families' gradients are orthogonal here: each share is its squared part of the norm
    g = agg.grad
    assert math.isclose(agg.family_shares["sine"], (g[0] ** 2 / (g**2).sum()).item(), rel_tol=1e-6)


def _pair(sine, linear, split):
    """Two families' gradient sums (one task each), in one result or split over two shards."""
    grads = {"sine": torch.tensor(sine), "linear": torch.tensor(linear)}
    metrics = {"sine": {"loss": 1.0}, "linear": {"loss": 1.0}}
    if not split:
        return [ShardResult(0, 3, 3, grads, {"sine": 1, "linear": 1}, metrics, 0.1)]
    return [ShardResult(k, 3, 3, {f: grads[f]}, {f: 1}, {f: metrics[f]}, 0.1) for k, f in enumerate(grads)]


@pytest.mark.parametrize("split", [False, True])
def test_pcgrad_removes_the_conflicting_part_of_each_family(split):
    # sine [1, 0] and linear [-1, 1] conflict (inner product -1): sine loses its part along
    # linear, [1, 0] + 1/2 [-1, 1] = [0.5, 0.5], linear its part along sine, [-1, 1] + [1, 0] = [0, 1]
    agg = aggregate(_pair([1.0, 0.0], [-1.0, 1.0], split), step=3, version=3, weighting="pcgrad")
    torch.testing.assert_close(agg.grad, torch.tensor([0.5 * 0.5 + 0.0, 0.5 * 0.5 + 0.5]))
    # the projected contributions no longer pull against each other: no negative share
    assert all(v >= 0 for v in agg.family_shares.values())
    assert math.isclose(sum(agg.family_shares.values()), 1.0)


def test_pcgrad_leaves_agreeing_families_as_uniform():
    pair = _pair([1.0, 2.0], [3.0, 1.0], split=True)
    pc = aggregate(pair, step=3, version=3, weighting="pcgrad")
    torch.testing.assert_close(pc.grad, aggregate(pair, step=3, version=3, weighting="uniform").grad)


@pytest.mark.parametrize("split", [False, True])
def test_normalized_gives_every_family_the_mean_norm(split):
    # family means halved: [1.5, 2] (norm 2.5) and [0, 0.5] (norm 0.5); both rescaled to 1.5
    agg = aggregate(_pair([3.0, 4.0], [0.0, 1.0], split), step=3, version=3, weighting="normalized")
    torch.testing.assert_close(agg.grad, torch.tensor([0.9, 1.2 + 1.5]))


def test_normalized_leaves_a_zero_gradient_at_zero():
    # the mean norm is (2.5 + 0) / 2: sine's halved mean [1.5, 2] is scaled to norm 1.25
    agg = aggregate(_pair([3.0, 4.0], [0.0, 0.0], split=True), step=3, version=3, weighting="normalized")
    torch.testing.assert_close(agg.grad, torch.tensor([0.75, 1.0]))
