import math

import pytest
import torch

from distmeta.algorithms import build
from distmeta.evaluation import evaluate, plot_curves, score_curve
from distmeta.evaluation.keys import eval_key
from distmeta.models import MLP, Conv4
from distmeta.tasks import EVALUATION, EpisodeFamily, GlyphSource, SineFamily


def _model():
    torch.manual_seed(0)
    return MLP(1, (16, 16), 1)


def test_curve_matches_plain_sgd_per_task():
    model = _model()
    tasks = SineFamily(shots=5, query=20).sample(0, EVALUATION, 0, range(3))
    curve = score_curve(build("maml", lr=0.05), model, dict(model.named_parameters()), tasks, steps=range(4))
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
    subset = score_curve(build("maml", lr=0.05), model, dict(model.named_parameters()), tasks, steps=(0, 3))
    torch.testing.assert_close(subset, curve[:, [0, 3]])


def test_anil_evaluation_adapts_only_the_head():
    torch.manual_seed(0)
    model = Conv4(1, 5, 8, 28)
    family = EpisodeFamily("glyphs", ways=5, shots=1, query=3).with_data(GlyphSource().load("test"))
    tasks = family.sample(0, EVALUATION, 0, range(2))
    curve = score_curve(
        build("anil", loss="cross_entropy", lr=0.5), model, dict(model.named_parameters()), tasks, steps=(0, 1, 2)
    )
    for i in range(2):
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        with torch.no_grad():
            fs, fq = model.body(sx), model.body(qx)
        head = torch.nn.Linear(fs.shape[1], 5)
        head.load_state_dict(model.head.state_dict())
        opt = torch.optim.SGD(head.parameters(), lr=0.5)
        for s in range(3):
            with torch.no_grad():
                acc = (head(fq).argmax(1) == qy).float().mean().item()
            assert math.isclose(acc, curve[i, s].item(), abs_tol=1e-6)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(fs), sy).backward()
            opt.step()


def test_protocol_reports_mean_and_ci95(tmp_path):
    model = _model()
    family = SineFamily()
    algo = build("maml", lr=0.01)
    report = evaluate(algo, model, family, seed=1, num_tasks=150, shots=[5, 10], steps=[0, 2], query=30)
    assert set(report.values) == {eval_key("mse", k, s, stat) for k in (5, 10) for s in (0, 2) for stat in ("mean", "ci95")}
    tasks = family.sample(1, EVALUATION, 0, range(150), shots=5, query=30)
    per_task = score_curve(algo, model, dict(model.named_parameters()), tasks, (0,))[:, 0].double()
    assert math.isclose(report.values[eval_key("mse", 5, 0, "mean")], per_task.mean().item(), rel_tol=1e-6)
    assert math.isclose(report.values[eval_key("mse", 5, 0, "ci95")], 1.96 * per_task.std().item() / math.sqrt(150), rel_tol=1e-6)
    # in MLflow: one series per K and statistic, its step the number of inner steps; the table's rows
    curves = {}
    for key, steps, value in report.series():
        curves.setdefault(key, []).append((steps, value))
    assert curves["mse.k5.ci95"] == [(s, report.values[eval_key("mse", 5, s, "ci95")]) for s in (0, 2)]
    assert sorted(curves) == ["mse.k10.ci95", "mse.k10.mean", "mse.k5.ci95", "mse.k5.mean"]
    cols = report.columns()
    assert list(cols) == ["shots", "steps", "mean", "ci95"] and cols["shots"] == [5, 5, 10, 10]
    assert cols["mean"][3] == report.values[eval_key("mse", 10, 2, "mean")]
    png = plot_curves(report, tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "K=5" in report.table() and "query MSE over 150" in report.table()


@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_classification_protocol_reports_accuracy(name):
    torch.manual_seed(0)
    algo = build(name, loss="cross_entropy", lr=0.4, ways=5)
    model = Conv4(1, 0 if name == "protonet" else 5, 8, 28)
    family = EpisodeFamily("glyphs", ways=5, shots=1, query=2).with_data(GlyphSource().load("test"))
    steps = [0, 3] if algo.adapts else [0]
    report = evaluate(algo, model, family, seed=0, num_tasks=30, shots=[1], steps=steps, query=2)
    for s in steps:
        assert 0.0 <= report.values[eval_key("acc", 1, s, "mean")] <= 1.0
        assert report.values[eval_key("acc", 1, s, "ci95")] > 0
    assert "query accuracy" in report.table()
