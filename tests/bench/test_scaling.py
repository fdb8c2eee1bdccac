"""``distmeta bench --scaling``: the bytes it reports are the wire's counts, its time split adds
up to the measured step, its sweeps measure real collectives and calls, the FLOP count on the
meta device is what a real run counts, and the projection behaves as weak scaling must."""

from __future__ import annotations

import os

import pytest
from torch.utils.flop_counter import FlopCounterMode

from distmeta.algorithms import Mode, build, meta_grad_loop
from distmeta.bench import costmodel, flops, projection, scaling, sweeps
from distmeta.bench.synthetic import class_images
from distmeta.cli import main
from distmeta.models import ModelSpec
from distmeta.tasks import TRAIN, EpisodeFamily


def test_the_split_leaves_the_exchange_as_the_wait_minus_what_the_shards_did_inside_it():
    parts = {"sample": 0.001, "meta_gradient": 0.009, "shard_wait": 0.020, "aggregation": 0.002, "optimizer": 0.003}
    learner = scaling.split({**parts, "wall": 0.030}, "learner")
    assert learner["compute_ms"] == pytest.approx(10.0) and learner["exchange_ms"] == pytest.approx(10.0)
    replicated = scaling.split({**parts, "wall": 0.022}, "allreduce")
    assert replicated["exchange_ms"] == pytest.approx(5.0)  # the reduction and Adam ran inside the wait
    assert sum(replicated.values()) == pytest.approx(22.0)


@pytest.mark.ray
def test_an_allreduce_step_sends_the_learner_nothing_and_a_sync_brings_one_state(ray_runtime):
    row = scaling.measure_step("sine", "allreduce", 2, 1, ["algorithm.compile=false", "algorithm.meta_batch_size=4"], None)
    weights = row["weights_bytes"]
    assert row["learner_sent"] == 0 and row["learner_received"] == 0  # metrics only: uncounted scalars
    assert 3 * weights <= row["sync_learner_received"] < 3 * weights + 1024  # weights and Adam's two moments
    assert weights <= row["actor_allreduce_payload"] < weights + 64  # one family's row, its count
    assert row["actor_ring_bytes"] == pytest.approx(row["actor_allreduce_payload"])  # 2 (n - 1) / n = 1 at n = 2
    parts = sum(row[f"{p}_ms"] for p in ("compute", "all_reduce", "apply", "exchange", "other"))
    assert parts == pytest.approx(row["wall_ms"], rel=0.02)


@pytest.mark.ray
def test_the_sweeps_time_real_collectives_and_calls(ray_runtime):
    links = sweeps.all_reduce(worlds=(2,), sizes=(4096, 1 << 20), repeats=2)
    (two,) = links
    assert two["ranks"] == 2 and len(two["seconds"]) == 2  # each a real all-reduce: its sums are checked inside
    for counts, compiled in (((1, 2), False), ((1,), True)):
        answers = sweeps.calls(counts=counts, rounds=3, compiled=compiled)
        assert all(s > 0 for s in answers["wall_s"] + answers["cpu_s"]) and len(answers["exchange_s"]) == 2


def test_the_flops_counted_on_the_meta_device_are_those_of_a_real_run():
    spec = ModelSpec("conv4", (1, 28, 28), 5, filters=8)
    task = EpisodeFamily("synthetic", ways=5, shots=1, query=3).with_data(class_images(5, 4, 28, 1)).sample(0, TRAIN, 0, [0])
    model, algo = spec.build(), build("maml", loss="cross_entropy", steps=1, lr=0.01, ways=5)
    with FlopCounterMode(display=False) as real:
        params = {k: p.detach() for k, p in model.named_parameters()}
        meta_grad_loop(algo, model, params, dict(model.named_buffers()), task, mode=Mode(diagnostics=False))
    assert real.get_total_flops() > 0
    assert flops.task_flops(spec, shots=1, query=3) == real.get_total_flops()
    assert flops.task_flops(spec, shots=5, query=3) > flops.task_flops(spec, shots=1, query=3)
    assert flops.task_flops(spec, first_order=True, query=3) < flops.task_flops(spec, query=3)


def test_the_projection_is_weak_scaling_and_all_reduce_beats_the_learner_at_scale(tmp_path):
    proj = projection.project((1e-3, 1e-4), 5e9, (1e-3, 1e-5), tasks=(1, 4), devices=(1, 8, 64))
    for r in proj["rows"]:
        one, eight, many = r["efficiency"]
        assert one == pytest.approx(1.0) and one >= eight >= many > 0
    by = {(r["workload"], r["tasks_per_gpu"], r["mode"]): r["efficiency"][-1] for r in proj["rows"]}
    for (name, m, mode), eff in by.items():
        if mode == "allreduce":
            assert by[(name, m, "allreduce, compiled calls")] > eff > by[(name, m, "learner")]  # cheaper calls
            assert m == 4 or eff < by[(name, 4, "allreduce")]  # more tasks a GPU hide more of the exchange
    resnet = next(r for r in proj["rows"] if r["workload"] == "ResNet-12 5w1s")
    assert resnet["params"] == sum(p.numel() for p in flops.resnet12_84().build().parameters())
    assert resnet["parts_at_64"]["all_reduce"] == pytest.approx(
        costmodel.allreduce_s(costmodel.gpu_link(64), resnet["params"] * 4, 64)
    )
    assert "| ResNet-12 5w5s | 4 | allreduce |" in projection.table(proj, devices=(8, 64))
    assert projection.plot(proj, tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    one = {**proj, "rows": [r for r in proj["rows"] if r["workload"] == "conv4 5w1s"]}
    assert projection.plot(one, tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"  # a single panel


@pytest.mark.parametrize(
    "args, says",
    [
        (["--scaling-workloads", "nope"], "--scaling-workloads 'nope'"),  # the last one given counts
        (["--scaling-steps", "0"], "--scaling-steps"),
        (["--plot", "out.jpg"], "PNG"),
        (["--mlflow", "sqlite:///m.db"], "--json"),
        (["--time-to-accuracy"], "--time-to-accuracy"),
        (["cluster.num_shards=8"], "drop cluster.num_shards=8"),
        (["model.nope=1"], "model.nope"),
    ],
)
def test_bad_scaling_options_exit_2_before_anything_runs(args, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--scaling", "--scaling-workloads", "conv4-5w1s,resnet12-cfs-5w1s", *args]) == 2
    assert says in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_what_writes_to_stdout_while_a_bench_measures_goes_to_stderr(capfd):
    from distmeta.bench.command import _report_alone_on_stdout

    with _report_alone_on_stdout():
        os.write(1, b"(raylet) WARNING: a worker process\n")
    os.write(1, b"{}\n")
    out, err = capfd.readouterr()
    assert out == "{}\n" and "(raylet) WARNING" in err
