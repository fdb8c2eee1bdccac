"""DropBlock's keyed noise: squares where the seeds say (against a loop that paints them), the
drop share the seed probability implies (a closed form), uniform counter-based draws, keys that
follow the batch's content, and nothing dropped in evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import vmap

from distmeta.models import ModelSpec, ResNet12
from distmeta.models.dropblock import DropBlock2d, batch_keys, mix


def _keys(n: int, seed: int = 0) -> torch.Tensor:
    return batch_keys(torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed)))


def test_every_seed_drops_its_square_and_nothing_else():
    drop = DropBlock2d(0.3, 3)
    shape = torch.Size([6, 4, 7, 9])
    seeds = drop.seeds(_keys(6), shape, torch.float64)
    assert seeds.shape == (6, 4, 5, 7) and 0 < seeds.sum() < seeds.numel()
    painted = torch.ones(shape, dtype=torch.float64)
    for n, c, i, j in seeds.nonzero().tolist():
        painted[n, c, i : i + 3, j : j + 3] = 0
    torch.testing.assert_close(drop.mask(_keys(6), shape, torch.float64), painted, rtol=0, atol=0)


def _coverage(h: int, w: int, bs: int, gamma: float) -> float:
    """The expected dropped share: a position is kept only if none of the seeds whose square
    covers it fires."""
    total = 0.0
    for i in range(h):
        for j in range(w):
            rows = min(i, h - bs) - max(0, i - bs + 1) + 1
            cols = min(j, w - bs) - max(0, j - bs + 1) + 1
            total += 1 - (1 - gamma) ** (rows * cols)
    return total / (h * w)


@pytest.mark.parametrize("rate, size, side", [(0.1, 5, 10), (0.1, 5, 5), (0.1, 2, 4), (0.25, 2, 2)])
def test_the_dropped_share_is_the_one_the_seed_probability_implies(rate, size, side):
    drop = DropBlock2d(rate, size)
    bs = drop.side(side, side)
    gamma = rate / bs**2 * side**2 / (side - bs + 1) ** 2
    n, c = 400, 64
    keep = drop.mask(_keys(n), torch.Size([n, c, side, side]), torch.float64)
    expected = _coverage(side, side, bs, gamma)
    # the channels' maps are independent draws: the standard error of their mean share
    spread = (1 - keep).mean(dim=(2, 3)).std().item() / math.sqrt(n * c)
    assert abs((1 - keep).mean().item() - expected) < 5 * spread


def test_counter_based_draws_are_uniform_and_uncorrelated():
    u = mix(torch.arange(1, 200_001)).double() / 2**31
    counts = torch.histc(u, bins=20, min=0, max=1)
    expected = len(u) / 20
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 45  # 19 degrees of freedom: p < 0.001 above 43.8
    lag = torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()
    assert abs(lag) < 5 / math.sqrt(len(u))
    assert u.min() >= 0 and u.max() < 1


def test_keys_follow_the_batch_content_and_position():
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    keys = batch_keys(x)
    assert torch.equal(keys, batch_keys(x.clone())) and len(set(keys.tolist())) == 5
    other = x.clone()
    other[4, 2, 7, 7] += 0.01  # one pixel of one image: every image's key changes
    assert (batch_keys(other) != keys).all()
    assert (batch_keys(x.flip(0)) != keys.flip(0)).all()  # order matters too
    assert torch.equal(vmap(batch_keys)(torch.stack([x, other])), torch.stack([keys, batch_keys(other)]))


def test_rescaled_in_training_and_identity_in_evaluation():
    drop = DropBlock2d(0.2, 2)
    x = torch.ones(4, 8, 6, 6)
    out = drop(x, _keys(4))
    assert (out == 0).any() and out.sum().item() == pytest.approx(x.numel())  # kept features scaled up
    drop.eval()
    assert drop(x, _keys(4)) is x
    assert DropBlock2d(0.2, 2)(x, None) is x


def test_resnet12_drops_in_its_last_two_blocks_by_the_config_sizes():
    net = ModelSpec("resnet12", (3, 84, 84), 0, dropblock=0.1).build()
    drops = [getattr(b, "drop", None) for b in net.body]
    assert drops[:2] == [None, None] and [d.size for d in drops[2:4]] == [5, 5]
    small = ResNet12(3, 0, (4, 6, 8, 10), 32, dropblock=0.1)
    assert [b.drop.size for b in list(small.body)[2:4]] == [2, 2]  # MetaOptNet's CIFAR choice
    assert all(getattr(b, "drop", None) is None for b in ResNet12(3, 0, (4, 6, 8, 10), 32).body)
    x = torch.randn(6, 3, 32, 32)
    small.train()
    a, b = small(x), small(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same batch draws the same squares
    assert not torch.allclose(a, small(x[[1, 0, 2, 3, 4, 5]])[[1, 0, 2, 3, 4, 5]])  # a new batch, new ones
    small.eval()
    assert not torch.allclose(a, small(x))
    with pytest.raises(ValueError, match="below 1"):
        DropBlock2d(1.0, 2)
    with pytest.raises(ValueError, match="positive side"):
        DropBlock2d(0.1, 0)
