"""What the served model computes: each task's query outputs after the algorithm's own inner
loop, vmapped over tasks, against plain per-task SGD and against the evaluation's scores."""

from __future__ import annotations

import copy

import pytest
import torch

from distmeta.algorithms import build
from distmeta.algorithms.adapted import adapted_outputs
from distmeta.evaluation import score_curve
from distmeta.models import MLP, Conv4
from distmeta.tasks import EVALUATION, EpisodeFamily, GlyphSource, SineFamily


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_maml_outputs_are_plain_sgd_on_each_support_set(steps):
    torch.manual_seed(0)
    model = MLP(1, (16, 16), 1)
    tasks = SineFamily(shots=5, query=20).sample(0, EVALUATION, 0, range(4))
    got = adapted_outputs(build("maml", lr=0.05), model, tasks.support_x, tasks.support_y, tasks.query_x, steps)
    for t in range(4):  # an independent computation: a copy of the network, torch.optim.SGD, one task at a time
        net = copy.deepcopy(model)
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(tasks.support_x[t]), tasks.support_y[t]).backward()
            opt.step()
        torch.testing.assert_close(got[t], net(tasks.query_x[t]).detach(), rtol=1e-5, atol=1e-6)
    scores = score_curve(build("maml", lr=0.05), model, dict(model.named_parameters()), tasks, steps=(steps,))
    mse = ((got - tasks.query_y) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(mse, scores[:, 0], rtol=1e-5, atol=1e-6)  # the evaluation's figure, task by task


@pytest.mark.parametrize("name", ["anil", "protonet"])
def test_classification_logits_score_as_the_evaluation_does(name):
    torch.manual_seed(0)
    model = Conv4(1, 5, 8, 28) if name == "anil" else Conv4(1, 0, 8, 28)
    family = EpisodeFamily("glyphs", ways=5, shots=1, query=3).with_data(GlyphSource().load("test"))
    tasks = family.sample(0, EVALUATION, 0, range(3))
    algo = build(name, loss="cross_entropy", lr=0.5)
    logits = adapted_outputs(algo, model, tasks.support_x, tasks.support_y, tasks.query_x, 2)
    assert logits.shape == (3, 15, 5)
    accuracy = (logits.argmax(-1) == tasks.query_y).float().mean(dim=1)
    steps = (2,) if algo.adapts else (0,)
    torch.testing.assert_close(accuracy, score_curve(algo, model, dict(model.named_parameters()), tasks, steps)[:, 0])
