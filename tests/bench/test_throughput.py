"""``distmeta bench``: its per-task loop baseline computes distmeta's meta-gradient (so the ratios
compare equal work), and the report has every mode's numbers."""
import json

import pytest
import torch

from distmeta import builders, config
from distmeta.bench.throughput import WORKLOADS, loop_step
from distmeta.cli import main
from distmeta.learner.aggregate import aggregate
from distmeta.models import flatten
from distmeta.tasks import TRAIN


@pytest.mark.parametrize("workload, extra", [("sine", []), ("conv4-5w1s", ["model.filters=8", "algorithm.meta_batch_size=4"])])
def test_the_loop_baseline_computes_distmetas_meta_gradient(workload, extra):
    cfg = config.load(None, [*WORKLOADS[workload], *extra, "cluster.num_shards=0", "algorithm.compile=false"])
    model = builders.model(cfg)
    weights = flatten({k: p.detach() for k, p in model.named_parameters()})
    group = builders.shard_group(cfg)
    plan = builders.learner_settings(cfg).planner.plan(3)
    expected = aggregate(group.compute(3, weights, 3, plan), step=3, version=3).grad
    family = builders.family(cfg, "train")
    data = builders.data(cfg, "train")
    tasks = (family if data is None else family.with_data(data)).sample(cfg.seed, TRAIN, 3, range(cfg.algorithm.meta_batch_size))
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # the step leaves the gradients in .grad
    a = cfg.algorithm
    loop_step(model, frozen, tasks, "cross_entropy" if builders.is_image(cfg) else "mse", a.inner_lr, a.inner_steps, a.first_order)
    got = flatten({k: p.grad for k, p in model.named_parameters()})
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.ray
def test_bench_reports_every_mode_with_ratios_to_the_loop(workdir, ray_runtime, capsys):
    assert main(["bench", "--workload", "sine", "--blocks", "2", "--steps", "2", "--shards", "1", "--json",
                 "--mlflow", f"sqlite:///{workdir / 'bench.db'}"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["modes"]) == {"loop", "in-process", "ray-1"}
    assert report["modes"]["loop"]["ratio_to_loop"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    for mode in report["modes"].values():
        assert mode["tasks_per_s"]["min"] > 0 and mode["ratio_to_loop"]["median"] > 0
    assert {"sample", "meta-gradient", "ray round trip", "aggregation", "optimizer"} <= set(report["modes"]["ray-1"]["ms_per_step"])
    assert report["modes"]["ray-1"]["actors_rss_mib"] > 0 and report["mlflow_run_id"]


def test_bench_refuses_an_unknown_workload(capsys):
    assert main(["bench", "--workload", "resnet"]) == 2
    assert "'resnet' is not one of sine, conv4-5w1s" in capsys.readouterr().err
