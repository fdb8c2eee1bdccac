"""The two normalisations: ``running`` equals ``F.batch_norm`` in training mode to second order
and in evaluation mode with its estimates; the estimates move as ``nn.BatchNorm2d``'s do; ProtoNets
on a running-norm network get the plain-autograd gradient and score in evaluation mode; a run
keeps the same estimates on one shard actor, two, or none."""

import torch
import torch.nn.functional as F
from torch import nn

from distmeta.algorithms import ProtoNet, meta_grad, meta_grad_loop
from distmeta.models import Conv4, ModelSpec, RunningBatchNorm2d, batch_statistics, running_layers, update_running
from distmeta.tasks import EpisodeFamily, GlyphSource
from tests.models.helpers import assert_batch_norm_to_second_order


def _norm() -> RunningBatchNorm2d:
    torch.manual_seed(1)
    norm = RunningBatchNorm2d(3).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    return norm


def test_running_norm_is_batch_norm_in_training_and_uses_its_estimates_in_evaluation():
    norm = _norm()
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert_batch_norm_to_second_order(norm, x)
    norm.eval()
    evaluated = F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, training=False, eps=norm.eps)
    torch.testing.assert_close(norm(x), evaluated)


def test_estimates_move_as_batch_norms_do():
    ours = _norm()
    theirs = nn.BatchNorm2d(3, momentum=0.1).double()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    x = torch.randn(7, 3, 4, 4, dtype=torch.float64)
    theirs.train()(x)  # one batch: PyTorch's own running-statistics update
    params = {k: p.detach() for k, p in ours.named_parameters()}
    update_running(ours, batch_statistics(ours, params, dict(ours.named_buffers()), [x]))
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)


def _protonet():
    torch.manual_seed(0)
    model = ModelSpec("conv4", (1, 28, 28), 0, filters=6, norm="running").build().double()
    params = {k: p.detach() for k, p in model.named_parameters()}
    family = EpisodeFamily("glyphs", ways=3, shots=2, query=2).with_data(GlyphSource().load("val"))
    return model, params, family.sample(0, 0, 0, range(12), dtype=torch.float64)


def test_protonet_on_running_norms_trains_on_batch_statistics_and_scores_on_its_estimates():
    model, params, tasks = _protonet()
    assert len(running_layers(model)) == 4 and isinstance(model, Conv4)
    buffers = dict(model.named_buffers())
    batched = meta_grad(ProtoNet(ways=3), model, params, buffers, tasks)
    looped = meta_grad_loop(ProtoNet(ways=3), model, params, buffers, tasks)
    model.zero_grad()
    total = 0
    for i in range(len(tasks)):  # plain autograd through the nn.Module in training mode
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        protos = torch.stack([model(sx)[sy == n].mean(0) for n in range(3)])
        total = total + F.cross_entropy(-(torch.cdist(model(qx), protos) ** 2), qy)
    total.backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(batched.grads[k], looped.grads[k], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.grads[k], p.grad, rtol=1e-7, atol=1e-10)

    with torch.no_grad():  # estimates far from any batch's statistics: evaluation must use them
        for m in model.modules():
            if isinstance(m, RunningBatchNorm2d):
                m.running_mean.fill_(0.3)
                m.running_var.fill_(4.0)
    from distmeta.evaluation import score_curve

    scores = score_curve(ProtoNet(ways=3), model, params, tasks, (0,))
    assert model.training, "evaluation leaves the model in the mode it found"

    def direct(mode: str) -> torch.Tensor:
        model.train(mode == "train")
        accs = []
        with torch.no_grad():
            for i in range(len(tasks)):
                sx, sy, qx, qy = (t[i] for t in tasks.tensors())
                protos = torch.stack([model(sx)[sy == n].mean(0) for n in range(3)])
                accs.append(((-(torch.cdist(model(qx), protos) ** 2)).argmax(1) == qy).double().mean())
        return torch.stack(accs)

    evaluated, transductive = direct("eval"), direct("train")
    assert not torch.equal(evaluated, transductive), "the estimates change the predictions: the check can tell"
    torch.testing.assert_close(scores[:, 0], evaluated)
