"""ProtoNets against a direct computation: explicit per-class means and pairwise distances."""

import pytest
import torch
import torch.nn.functional as F

from distmeta.algorithms import ProtoNet, meta_grad, meta_grad_loop, protonet
from distmeta.models import Conv4, ResNet12
from distmeta.tasks import EpisodeFamily, GlyphSource


def test_logits_are_negative_squared_distances_to_class_means():
    torch.manual_seed(0)
    feats, labels = torch.randn(12, 7, dtype=torch.float64), torch.tensor([2, 0, 1, 3] * 3)
    query = torch.randn(5, 7, dtype=torch.float64)
    protos, present = protonet.prototypes(feats, labels, 4)
    assert present.all()
    for n in range(4):
        torch.testing.assert_close(protos[n], feats[labels == n].mean(0))
    direct = torch.stack([torch.stack([-((q - c) ** 2).sum() for c in protos]) for q in query])
    torch.testing.assert_close(protonet.logits(query, protos), direct)


def _embedding_and_tasks(backbone="conv4"):
    """A small Conv4 (or narrow ResNet-12, with DropBlock or without) embedding (float64) and three 3-way 2-shot glyph episodes."""
    torch.manual_seed(0)
    if backbone == "conv4":
        model = Conv4(in_channels=1, num_classes=0, hidden=8, image_size=28).double()
    else:  # "resnet12", or "resnet12+dropblock": the keyed masks are constants of every path
        drop = 0.2 if backbone.endswith("dropblock") else 0.0
        model = ResNet12(in_channels=1, num_classes=0, widths=(4, 6, 8, 10), image_size=28, dropblock=drop).double()
    params = {k: p.detach() for k, p in model.named_parameters()}
    family = EpisodeFamily("glyphs", ways=3, shots=2, query=2).with_data(GlyphSource().load("val"))
    return model, params, family.sample(0, 0, 0, range(3), dtype=torch.float64)


@pytest.mark.parametrize("backbone", ["conv4", "resnet12", "resnet12+dropblock"])
def test_vmapped_gradient_equals_loop_and_plain_autograd(backbone):
    model, params, tasks = _embedding_and_tasks(backbone)
    algo = ProtoNet(ways=3)
    batched = meta_grad(algo, model, params, {}, tasks)
    looped = meta_grad_loop(algo, model, params, {}, tasks)
    # plain autograd through the nn.Module, written out without the helpers above
    model.zero_grad()
    total = 0
    for i in range(len(tasks)):
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        fs, fq = model(sx), model(qx)
        protos = torch.stack([fs[sy == n].mean(0) for n in range(3)])
        total = total + F.cross_entropy(-(torch.cdist(fq, protos) ** 2), qy)
    total.backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(batched.grads[k], looped.grads[k], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(batched.grads[k], p.grad, rtol=1e-7, atol=1e-10)
    acc = batched.metrics["query_acc"]
    assert torch.all((acc >= 0) & (acc <= 1)) and set(batched.metrics) == {"loss", "query_acc"}


def test_an_episode_with_fewer_classes_than_ways_scores_only_its_own():
    """A mixture's 3-way family under ProtoNet(ways=5): the same loss, gradient and accuracy as ProtoNet(ways=3)."""
    model, params, tasks = _embedding_and_tasks()
    exact, padded = meta_grad(ProtoNet(ways=3), model, params, {}, tasks), meta_grad(ProtoNet(ways=5), model, params, {}, tasks)
    for k in exact.grads:
        torch.testing.assert_close(padded.grads[k], exact.grads[k], rtol=1e-10, atol=1e-12)
    for k in exact.metrics:
        torch.testing.assert_close(padded.metrics[k], exact.metrics[k])
