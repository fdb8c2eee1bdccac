import math

import torch

from distmeta.evaluation import adaptation_curve, evaluate_sine, plot_curves
from distmeta.models import MLP
from distmeta.tasks import EVALUATION, SineFamily
from distmeta.tracking.names import eval_key


def _model():
    torch.manual_seed(0)
    return MLP(1, (16, 16), 1)


def test_curve_matches_plain_sgd_per_task():
    model = _model()
    tasks = SineFamily(shots=5, query=20).sample(0, EVALUATION, 0, range(3))
    curve = adaptation_curve(model, dict(model.named_parameters()), tasks, lr=0.05, max_steps=3)
    assert curve.shape == (3, 4)
    for i in range(3):
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        net = MLP(1, (16, 16), 1)
        net.load_state_dict(model.state_dict())
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        for s in range(4):
            with torch.no_grad():
                assert math.isclose(((net(qx) - qy) ** 2).mean().item(), curve[i, s].item(), rel_tol=1e-5)
            opt.zero_grad()
            ((net(sx) - sy) ** 2).mean().backward()
            opt.step()


def test_protocol_reports_mean_and_ci95(tmp_path):
    model = _model()
    family = SineFamily()
    report = evaluate_sine(model, family, seed=1, num_tasks=50, shots=[5, 10], steps=[0, 2], query=30, inner_lr=0.01, chunk=20)
    assert set(report.values) == {eval_key(k, s, stat) for k in (5, 10) for s in (0, 2) for stat in ("mean", "ci95")}
    tasks = family.sample(1, EVALUATION, 0, range(50), shots=5, query=30)
    per_task = adaptation_curve(model, dict(model.named_parameters()), tasks, 0.01, 0)[:, 0].double()
    assert math.isclose(report.values[eval_key(5, 0, "mean")], per_task.mean().item(), rel_tol=1e-6)
    assert math.isclose(report.values[eval_key(5, 0, "ci95")], 1.96 * per_task.std().item() / math.sqrt(50), rel_tol=1e-6)
    png = plot_curves(report, tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "K=5" in report.table([5, 10], [0, 2])
