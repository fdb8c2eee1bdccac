"""ResNet-12 and WRN-28-10 under second-order MAML, in float64 at narrow widths and 16x16 images:
the vmapped meta-gradient equals the per-task loop twin, an explicit double-backward reference
written here with ``torch.nn.functional`` (``F.batch_norm`` for the normalisation, no
``functional_call``, no ``BatchStatNorm2d``), and central finite differences; with DropBlock on,
the reference applies the same keyed masks as constants. Parameter counts at the default widths
against the published figures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distmeta.algorithms import MAML, InnerLoop, meta_grad, meta_grad_loop
from distmeta.models import ModelSpec, ResNet12, WideResNet
from distmeta.models.dropblock import DropBlock2d, batch_keys
from distmeta.tasks import TaskBatch
from tests.models.helpers import randomize_norms

WAYS, SHOTS, QUERY, SIZE, LR = 3, 2, 2, 16, 0.1
NARROW = (2, 3, 4, 5)
DROP = DropBlock2d(0.3, 2)
"""The DropBlock of the ``resnet12+dropblock`` case: 2x2 squares at 16x16 (maps of 2x2 and 1x1)."""


def _tasks(num_tasks=2, seed=0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(num_tasks, WAYS * SHOTS, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    qx = torch.randn(num_tasks, WAYS * QUERY, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    labels = torch.arange(WAYS)
    return TaskBatch(
        sx, labels.repeat_interleave(SHOTS).expand(num_tasks, -1), qx, labels.repeat_interleave(QUERY).expand(num_tasks, -1)
    )


def _model(kind: str, seed=0):
    torch.manual_seed(seed)
    if kind.startswith("resnet12"):
        drop = kind.endswith("dropblock")
        model = ResNet12(3, WAYS, NARROW, SIZE, dropblock=DROP.rate if drop else 0.0, dropblock_size=DROP.size)
    else:
        model = WideResNet(3, WAYS, NARROW, depth=28)
    return randomize_norms(model.double())


def _norm(w: dict, name: str, h: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(h, None, None, w[f"{name}.weight"], w[f"{name}.bias"], training=True, eps=1e-5)


def _resnet12_forward(w: dict, x: torch.Tensor, drop: bool = False) -> torch.Tensor:
    h, keys = x, batch_keys(x)
    for b in range(4):
        p = f"body.{b}"
        out = F.leaky_relu(_norm(w, f"{p}.norm1", F.conv2d(h, w[f"{p}.conv1.weight"], padding=1)), 0.1)
        out = F.leaky_relu(_norm(w, f"{p}.norm2", F.conv2d(out, w[f"{p}.conv2.weight"], padding=1)), 0.1)
        out = _norm(w, f"{p}.norm3", F.conv2d(out, w[f"{p}.conv3.weight"], padding=1))
        short = _norm(w, f"{p}.shortcut.1", F.conv2d(h, w[f"{p}.shortcut.0.weight"]))
        h = F.max_pool2d(F.leaky_relu(out + short, 0.1), 2)
        if drop and b >= 2:
            keep = DropBlock2d(DROP.rate, DROP.size, salt=b).mask(keys, h.shape, h.dtype)
            h = h * keep * keep.numel() / keep.sum()
    return F.linear(h.mean(dim=(2, 3)), w["head.weight"], w["head.bias"])


def _wrn_forward(w: dict, x: torch.Tensor) -> torch.Tensor:
    h = F.conv2d(x, w["body.0.weight"], padding=1)
    for i in range(1, 13):  # 3 groups of 4 blocks; the first of groups 2 and 3 strides 2
        p, stride = f"body.{i}", 2 if i in (5, 9) else 1
        a = F.relu(_norm(w, f"{p}.norm1", h))
        out = F.conv2d(a, w[f"{p}.conv1.weight"], stride=stride, padding=1)
        out = F.conv2d(F.relu(_norm(w, f"{p}.norm2", out)), w[f"{p}.conv2.weight"], padding=1)
        short = w.get(f"{p}.shortcut.weight")
        h = out + (h if short is None else F.conv2d(a, short, stride=stride))
    h = F.relu(_norm(w, "body.13", h))
    return F.linear(h.mean(dim=(2, 3)), w["head.weight"], w["head.bias"])


def _reference(kind: str, params: dict, tasks: TaskBatch, steps: int) -> dict:
    """Explicit per-task second-order MAML: ``autograd.grad(create_graph=True)`` in the inner loop."""
    if kind.startswith("resnet12"):
        run = lambda w, x: _resnet12_forward(w, x, drop=kind.endswith("dropblock"))  # noqa: E731
    else:
        run = _wrn_forward
    theta = {k: p.detach().clone().requires_grad_(True) for k, p in params.items()}
    total = {k: torch.zeros_like(p) for k, p in theta.items()}
    for i in range(len(tasks)):
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        fast = theta
        for _ in range(steps):
            grads = torch.autograd.grad(F.cross_entropy(run(fast, sx), sy), list(fast.values()), create_graph=True)
            fast = {k: w - LR * g for (k, w), g in zip(fast.items(), grads)}
        outer = torch.autograd.grad(F.cross_entropy(run(fast, qx), qy), list(theta.values()))
        for acc, g in zip(total.values(), outer):
            acc += g
    return total


def _rel(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a).sqrt()
    return (num / sum((b[k] ** 2).sum() for k in b).sqrt()).item()


@pytest.mark.parametrize("kind", ["resnet12", "resnet12+dropblock", "wrn28_10"])
@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_maml_under_vmap_loop_explicit_reference_and_finite_differences(kind, steps):
    model, tasks = _model(kind), _tasks()
    params = {k: p.detach() for k, p in model.named_parameters()}
    algo = MAML(loss="cross_entropy", inner=InnerLoop(steps=steps, lr=LR))
    if kind.endswith("dropblock"):  # the case checks a forward that drops something
        assert not torch.equal(model(tasks.support_x[0]), model.eval()(tasks.support_x[0]))
        model.train()

    batched = meta_grad(algo, model, params, {}, tasks)
    looped = meta_grad_loop(algo, model, params, {}, tasks)
    reference = _reference(kind, params, tasks, steps)
    assert set(reference) == set(batched.grads)
    assert _rel(batched.grads, reference) < 1e-8
    assert _rel(looped.grads, reference) < 1e-8

    gen = torch.Generator().manual_seed(2)
    direction = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
    # (Leaky)ReLU and max-pool are piecewise smooth, and at narrow widths the normalised
    # pre-activations crowd around the kink: steps of 1e-7 already cross some in WRN's 25 layers;
    # in float64 a step of 1e-8 still resolves the difference to about 1e-7 relative
    eps = 1e-8

    def shifted(sign):
        moved = {k: p + sign * eps * direction[k] for k, p in params.items()}
        return meta_grad(algo, model, moved, {}, tasks).metrics["loss"].sum()

    fd = (shifted(1) - shifted(-1)) / (2 * eps)
    analytic = sum((batched.grads[k] * direction[k]).sum() for k in params)
    assert abs(fd - analytic) <= 1e-4 * abs(analytic)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_default_widths_have_the_published_parameter_counts():
    resnet = ModelSpec("resnet12", (3, 84, 84), 0).build()
    convs = sum(
        9 * i * o + 2 * o + 2 * (9 * o * o + 2 * o) + i * o + 2 * o for i, o in zip((3, 64, 160, 320), (64, 160, 320, 640))
    )
    assert _count(resnet) == convs == 12_424_320  # MetaOptNet's ResNet-12: 12.4M
    assert resnet(torch.zeros(2, 3, 84, 84)).shape == (2, 640)
    wrn = ModelSpec("wrn28_10", (3, 84, 84), 0).build()
    assert abs(_count(wrn) - 36.5e6) / 36.5e6 < 0.005  # WRN-28-10 (Zagoruyko & Komodakis): 36.5M
    assert wrn(torch.zeros(1, 3, 32, 32)).shape == (1, 640)
    assert ModelSpec("resnet12", (3, 32, 32), 5, widths=NARROW).build()(torch.zeros(4, 3, 32, 32)).shape == (4, 5)


def test_shapes_and_errors():
    with pytest.raises(ValueError, match="too small"):
        ResNet12(3, 5, NARROW, 8)
    with pytest.raises(ValueError, match="four positive"):
        ResNet12(3, 5, (4, 4, 4), 32)
    with pytest.raises(ValueError, match="6n"):
        WideResNet(3, 5, NARROW, depth=27)
    with pytest.raises(ValueError, match="square images"):
        ModelSpec("resnet12", (3, 32, 16), 5).build()
