"""``distmeta bench``: its per-task loop baseline computes distmeta's meta-gradient (so the ratios
compare equal work), and the report has every mode's numbers."""

import json

import pytest
import torch

from distmeta import config
from distmeta.bench.baseline import rl_loop_step
from distmeta.bench.throughput import DATA, WORKLOADS, loop_step
from distmeta.cli import main
from distmeta.models import flatten
from distmeta.recipe import Recipe
from distmeta.shard.aggregate import aggregate
from distmeta.tasks import TRAIN
from tests.shard.helpers import compute


@pytest.mark.parametrize(
    "workload, extra",
    [
        ("sine", []),
        ("conv4-5w1s", ["model.filters=8", "algorithm.meta_batch_size=4"]),
        ("resnet12-cfs-5w1s", ["model.widths=[4,6,8,10]", "algorithm.meta_batch_size=2"]),
        ("navigation2d", ["model.hidden=[16,16]", "algorithm.meta_batch_size=4", "tasks.shots=3", "tasks.query=2"]),
    ],
)
def test_the_loop_baseline_computes_distmetas_meta_gradient(workload, extra, tmp_path):
    if workload in DATA:
        extra = [*extra, f"tasks.root={DATA[workload](tmp_path / 'data')}"]
    cfg = config.load(None, [*WORKLOADS[workload], *extra, "cluster.num_shards=0", "algorithm.compile=false"])
    recipe = Recipe.from_config(cfg)
    model = recipe.model()
    weights = flatten({k: p.detach() for k, p in model.named_parameters()})
    group = recipe.shard_group()
    plan = recipe.learner_settings.planner.plan(3)
    expected = aggregate(compute(group, 3, weights, 3, plan), step=3, version=3).grad
    family, units = recipe.families("train")[0], recipe.training_units
    tasks = family.with_data(units[0] if units else None).sample(cfg.seed, TRAIN, 3, range(cfg.algorithm.meta_batch_size))
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # the step leaves the gradients in .grad
    a = cfg.algorithm
    # meta-RL: the same episodes, one environment at a time (halfcheetah-dir is not compared: its
    # chaotic dynamics grow a one-row forward's rounding into other episodes)
    if recipe.algorithm.collects:
        rl_loop_step(model, frozen, tasks, recipe.algorithm)
    else:
        loop_step(model, frozen, tasks, recipe.algorithm.loss, a.inner_lr, a.inner_steps, a.first_order)
    got = flatten({k: p.grad for k, p in model.named_parameters()})
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.ray
def test_bench_reports_every_mode_with_ratios_to_the_loop(workdir, capsys):
    """Each mode in its own process (the Ray one with its own embedded Ray, as distmeta train)."""
    assert (
        main(
            [
                "bench",
                "--workload",
                "sine",
                "--blocks",
                "2",
                "--steps",
                "2",
                "--shards",
                "1",
                "--json",
                "--mlflow",
                f"sqlite:///{workdir / 'bench.db'}",
                "algorithm.compile=false",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["modes"]) == {"loop", "in-process", "ray-1"}
    assert report["modes"]["loop"]["ratio_to_loop"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    for mode in report["modes"].values():
        assert mode["tasks_per_s"]["min"] > 0 and mode["ratio_to_loop"]["median"] > 0
    split = report["modes"]["ray-1"]["ms_per_step"]  # measured inside the real MetaLearner and around it
    assert {"sample", "meta_gradient", "shard_wait", "aggregation", "optimizer", "logging", "lightning"} <= set(split)
    assert split["shard_wait"] >= split["meta_gradient"] > 0  # the driver waited at least for the shard's compute
    assert report["modes"]["ray-1"]["actors_rss_mib"] > 0 and report["mlflow_run_id"]
    assert all(m["peak_rss_mib"] > 0 for m in report["modes"].values())


def test_bench_refuses_an_unknown_workload(capsys):
    assert main(["bench", "--workload", "resnet"]) == 2
    assert "'resnet' is not one of sine, conv4-5w1s" in capsys.readouterr().err


def test_modes_take_turns_block_by_block_and_a_finished_one_is_skipped():
    import threading

    from distmeta.bench.turns import Clock, Turns

    turns, order = Turns(3), []
    clocks = [Clock(i, turns, steps=2, blocks=2, parts=lambda: {}) for i in range(3)]

    def mode(i: int, steps: int) -> None:
        clocks[i].start()
        for _ in range(steps):
            order.append(i)
            clocks[i].tick()
        turns.pass_on(i, finished=True)

    # mode 1 stops after its first block (as a failed mode does); the others keep taking turns
    threads = [threading.Thread(target=mode, args=(i, 2 if i == 1 else 6)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert order == [0, 0, 1, 1, 2, 2, 0, 0, 2, 2, 0, 0, 2, 2]
    assert len(clocks[0].block_seconds) == 3 and len(clocks[1].block_seconds) == 1


def test_steps_after_the_last_block_are_not_counted():
    """A distmeta mode runs one logged step past its blocks: it must not make a block of its own."""
    from distmeta.bench.turns import Clock, Turns

    spent = {"meta_gradient": 0.0}
    clock = Clock(0, Turns(1), steps=2, blocks=1, parts=lambda: dict(spent))
    clock.start()
    for _ in range(4):  # warm-up block, measured block
        spent["meta_gradient"] += 1.0
        clock.tick()
    spent["meta_gradient"] += 100.0  # the extra step
    clock.tick()
    assert len(clock.block_seconds) == 2
    assert [p["meta_gradient"] for p in clock.block_parts] == [2.0, 2.0]


def test_a_mode_that_leaves_before_its_turn_does_not_take_the_turn():
    from distmeta.bench.turns import Turns

    turns = Turns(3)
    turns.pass_on(2, finished=True)  # mode 2 failed while starting; mode 0 holds the turn
    assert turns._current.value == 0
    turns.pass_on(0)
    assert turns._current.value == 1
    turns.pass_on(1)
    assert turns._current.value == 0  # mode 2 is skipped
