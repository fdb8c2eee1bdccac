"""Several families' tasks in one vmapped call (``meta_grad_grouped``, what a shard runs for a
mixture's families on one dense network) against each family's tasks alone through the per-task
autograd loop: every algorithm that runs on a shared network, groups interleaved and uneven."""

from __future__ import annotations

import pytest
import torch

from distmeta.algorithms import build, meta_grad_grouped, meta_grad_loop
from distmeta.models import MLP
from distmeta.tasks import TRAIN, FunctionFamily, TaskBatch
from tests.algorithms.helpers import glyph_network_and_tasks

GROUPS = torch.tensor([2, 0, 0, 1, 2, 0, 2])
"""Seven tasks of three families, interleaved, three / one / three."""


def mixture_batch(dtype=torch.float64) -> TaskBatch:
    """Task t of the family GROUPS[t] names (sine, linear, tanh), as a shard gets them."""
    kinds = ("sine", "linear", "tanh")
    rows = [
        FunctionFamily(kinds[g], shots=5, query=6).sample(0, TRAIN, 0, [t], dtype=dtype) for t, g in enumerate(GROUPS.tolist())
    ]
    return TaskBatch.cat(rows)


def random_params(model, dtype):
    gen = torch.Generator().manual_seed(3)
    return {k: 0.5 * torch.randn(p.shape, generator=gen, dtype=dtype) for k, p in model.named_parameters()}


def assert_grouped_equals_each_group_alone(algo, model, params, batch, tol, chunk_size=0):
    got, metrics = meta_grad_grouped(algo, model, params, {}, batch, GROUPS, 3, chunk_size=chunk_size)
    for g in range(3):
        rows = (GROUPS == g).nonzero().flatten()
        alone = meta_grad_loop(algo, model, params, {}, TaskBatch(*(t[rows] for t in batch.tensors())))
        for k in params:
            torch.testing.assert_close(got[g][k], alone.grads[k], rtol=tol, atol=tol)
        for key, per_task in alone.metrics.items():
            torch.testing.assert_close(metrics[key][rows], per_task, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("maml", {}),
        ("maml", {"checkpoint": True}),  # per-task explicit gradients, added up by group
        ("fomaml", {}),
        ("anil", {}),
        ("metasgd", {}),
        ("reptile", {"inner_batch": 3}),
        ("cavia", {"contexts": 3}),
        ("mmaml", {"hidden": 6}),
    ],
)
def test_grouped_equals_each_family_alone(name, kw):
    algo = build(name, lr=0.05, steps=2, **kw)
    torch.manual_seed(0)
    model = algo.meta_model(MLP(1, (8, 8), 1)).double()
    params = random_params(model, torch.float64)
    batch = mixture_batch()
    assert_grouped_equals_each_group_alone(algo, model, params, batch, 1e-10)
    assert_grouped_equals_each_group_alone(algo, model, params, batch, 1e-10, chunk_size=3)


def test_grouped_prototypes_on_glyph_episodes():
    net, batch = glyph_network_and_tasks("mlp", tasks=len(GROUPS))
    algo = build("protonet", loss="cross_entropy")
    params = {k: p.detach() for k, p in net.named_parameters()}
    assert_grouped_equals_each_group_alone(algo, net, params, batch, 1e-5)


def test_a_group_without_tasks_gets_zero():
    algo = build("maml", lr=0.05, steps=1)
    model = MLP(1, (8,), 1).double()
    params = random_params(model, torch.float64)
    got, _ = meta_grad_grouped(algo, model, params, {}, mixture_batch(), GROUPS, 4)
    assert all((g == 0).all() for g in got[3].values())
    assert any((g != 0).any() for g in got[1].values())
