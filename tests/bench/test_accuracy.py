"""``distmeta bench --time-to-accuracy`` and the torch-only kernel bench, on tiny settings."""

import json

import pytest

from distmeta.bench import accuracy, kernels
from distmeta.cli import main
from tests.conftest import SINE_CONFIG

TINY = [
    "cluster.num_shards=0",
    "trainer.max_steps=6",
    "trainer.val_tasks=10",
    "algorithm.compile=false",
    "algorithm.meta_lr=0.01",
]


def test_the_race_stops_at_the_target_and_times_training_only(workdir):
    report = accuracy.run(SINE_CONFIG, TINY, target=100.0, eval_every=2, max_seconds=60, modes=("loop", "sync"))
    loop, sync = report["modes"]["loop"], report["modes"]["sync"]
    assert loop["reached"] and sync["reached"] and loop["steps"] == sync["steps"] == 2  # the first scoring
    # same initial weights, same tasks, same maths: the baseline and distmeta score alike
    assert loop["score"] == pytest.approx(sync["score"], rel=1e-4)
    assert loop["speedup_vs_loop"] == 1.0 and sync["speedup_vs_loop"] > 0


def test_a_mode_that_misses_the_target_runs_to_max_steps_and_says_so(workdir):
    report = accuracy.run(SINE_CONFIG, TINY, target=1e-9, eval_every=3, max_seconds=60, modes=("pipelined",))
    p = report["modes"]["pipelined"]
    assert not p["reached"] and p["steps"] == 6 and [e[0] for e in p["evals"]] == [3, 6]
    assert "speedup_vs_loop" not in p  # no loop in this race


def test_cli_refuses_unknown_race_modes(capsys):
    assert main(["bench", "--time-to-accuracy", "--modes", "loop,fast"]) == 2
    assert "choose from loop, sync, pipelined" in capsys.readouterr().err


def test_kernel_bench_runs_on_the_cpu_with_torch_alone(capsys):
    assert kernels.main(["--workload", "sine", "--device", "cpu", "--blocks", "1", "--steps", "1", "--tasks", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["modes"]) == {"loop baseline", "distmeta vmap", "distmeta loop"}
    assert report["modes"]["loop baseline"]["ratio_to_loop"] == 1.0 and report["modes"]["distmeta vmap"]["tasks_per_s"] > 0


def test_kernel_bench_races_a_mixtures_families_one_call_each_and_grouped(capsys):
    assert kernels.main(["--workload", "multimodal-5", "--device", "cpu", "--blocks", "1", "--steps", "1", "--tasks", "10"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["modes"]) == {"loop baseline", "distmeta vmap", "distmeta loop", "distmeta grouped"}
    assert report["modes"]["distmeta grouped"]["tasks_per_s"] > 0


def test_kernel_bench_measures_mmaml_against_its_own_per_task_loop(capsys):
    args = ["--workload", "multimodal-5-mmaml-lstm", "--device", "cpu", "--blocks", "1", "--steps", "1", "--tasks", "10"]
    assert kernels.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["modes"]) == {"distmeta vmap", "distmeta loop", "distmeta grouped"}
    assert report["modes"]["distmeta loop"]["ratio_to_loop"] == 1.0 and report["modes"]["distmeta grouped"]["tasks_per_s"] > 0
