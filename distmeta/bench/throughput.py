"""``distmeta bench``: meta-training throughput against a plain per-task loop, in one process tree.

Modes (:mod:`distmeta.bench.modes`), each training its own copy of the same model on the same
task stream:

- ``loop``: the per-task baseline (learn2learn / higher style);
- ``in-process``: ``distmeta train`` with ``cluster.num_shards=0``: the shard worker in the driver,
  the ``MetaLearner`` in Lightning's ``Trainer``, metrics through the asynchronous MLflow logger;
- ``ray-<n>``: the same over ``n`` Ray shard actors, with its own embedded Ray (as ``distmeta train``).

Every mode runs in its own process, on that process's main thread as ``distmeta train`` runs
(OpenMP teams of other threads ran conv4 slower, docs/performance.md), and only the one holding
the turn computes (:class:`Turns`): after a warm-up block, the modes take turns running blocks of
meta-steps, so machine noise falls on all of them alike. Each block gives tasks per second; the
ratios to ``loop`` are taken block by block and summarised by median, min and max.
"""

from __future__ import annotations

import contextlib
import os
import queue
import resource
import shutil
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from distmeta import config
from distmeta.bench import report
from distmeta.bench.modes import DistmetaRun, LoopBaseline, loop_step
from distmeta.bench.report import log_to_mlflow, table
from distmeta.bench.turns import _SPAWN, Clock, StepTimer, Turns
from distmeta.bench.workloads import DATA, THREADS, WORKLOADS
from distmeta.recipe import Recipe
from distmeta.tracking.names import STEP_PARTS


@dataclass(frozen=True)
class _Mode:
    """What one mode's process needs (plain values: it is pickled to the process)."""

    index: int
    name: str
    overrides: tuple[str, ...]
    shards: int
    threads: int
    steps: int
    blocks: int
    workdir: Path


def run(
    workload: str,
    overrides: list[str] = (),
    blocks: int = 5,
    steps: int = 10,
    shards: int = 2,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Warm-up block, then ``blocks`` measured blocks of ``steps`` meta-steps per mode, in turns."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload '{workload}'; known: {', '.join(WORKLOADS)}")
    total = (blocks + 1) * steps
    # one step past the blocks: a run's last step is always logged (with the metrics that cost
    # compute of their own), and would otherwise land in the last measured block
    base = [
        *WORKLOADS[workload],
        "trainer.progress_bar=false",
        f"trainer.max_steps={total + 1}",
        f"trainer.val_every_n_steps={total + 2}",
        *overrides,
    ]
    threads = THREADS[workload]
    workdir = Path(tempfile.mkdtemp(prefix="distmeta-bench-"))
    try:
        if workload in DATA:
            base.insert(len(WORKLOADS[workload]), f"tasks.root={DATA[workload](workdir / 'data')}")
        # checks the overrides before anything starts (and decodes a dataset into its cache once)
        batch = Recipe.from_config(config.load(None, [*base, "cluster.num_shards=0"])).learner_settings.planner.meta_batch_size
        counts = sorted({1, shards}) if shards > 0 else []
        modes = [_Mode(0, "loop", (*base, "cluster.num_shards=0"), 0, threads, steps, blocks, workdir)]
        for n in [0, *counts]:
            extra = (f"cluster.num_shards={n}",) + ((f"cluster.cpus_per_shard={_cpus_per_shard(threads, n)}",) if n else ())
            modes.append(
                _Mode(len(modes), "in-process" if n == 0 else f"ray-{n}", (*base, *extra), n, threads, steps, blocks, workdir)
            )
        reports = _run_in_turns(modes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the runs' checkpoints and metrics are scratch
    failed = [r for r in reports if r.get("error")]
    if failed:
        raise RuntimeError(f"bench mode {failed[0]['name']} failed:\n{failed[0]['error']}")
    per_mode = {r["name"]: [steps * batch / s for s in r["block_seconds"][1:]] for r in reports}
    for b in range(blocks):
        log(f"block {b + 1}: " + ", ".join(f"{n} {v[b]:,.0f} tasks/s" for n, v in per_mode.items()))
    head = {"workload": workload, "overrides": list(overrides), "blocks": blocks, "steps_per_block": steps,
            "meta_batch_size": batch, "threads": threads, "torch": torch.__version__}  # fmt: skip
    return {**head, "modes": report.modes(reports, per_mode, blocks * steps, _ORDER)}


START_TIMEOUT_S = 600.0
"""How long the modes' processes may take to start (imports, Ray actors) before the first turn."""


def _run_in_turns(modes: list[_Mode]) -> list[dict]:
    """Every mode in its own process; all start, then take turns. Their reports, in mode order."""
    turns, results = Turns(len(modes)), _SPAWN.Queue()
    # built: no mode starts while another is still starting; done: none tears down (checkpoint,
    # actors, interpreter exit) while another still measures
    built, done = _SPAWN.Barrier(len(modes)), _SPAWN.Barrier(len(modes))
    procs = [_SPAWN.Process(target=_mode_process, args=(m, turns, built, done, results), name=f"bench-{m.name}") for m in modes]
    for p in procs:
        p.start()
    reports: dict[int, dict] = {}
    while len(reports) < len(modes):
        try:
            r = results.get(timeout=5.0)
            reports[r["index"]] = r
        except queue.Empty:
            if any(not p.is_alive() and m.index not in reports for m, p in zip(modes, procs)):
                built.abort()  # one died without a report (killed, crashed): nobody waits for it
                done.abort()
            if all(not p.is_alive() for p in procs):
                break
    for p in procs:
        p.join(timeout=60.0)
        if p.is_alive():
            p.terminate()
    return [
        reports.get(m.index)
        or {"index": m.index, "name": m.name, "error": f"its process died (exit code {procs[m.index].exitcode})"}
        for m in modes
    ]


def _mode_process(mode: _Mode, turns: Turns, built, done, results) -> None:
    """One mode, in a process of its own: build it, wait until every mode is built, run its
    blocks in turns, wait until every mode is done; put its report (block times, step-time parts,
    peak memory) on ``results``."""
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.pop("RAY_ADDRESS", None)  # Ray modes: their own embedded Ray, as `distmeta train` on a laptop
    torch.set_num_threads(mode.threads)  # the recipe's runtime lowers the learner to 1 thread when shards exist
    report: dict = {"index": mode.index, "name": mode.name}
    runner = None
    with contextlib.ExitStack() as stack:
        try:
            try:
                recipe = Recipe.from_config(config.load(None, list(mode.overrides)))
                stack.enter_context(recipe.runtime())
                clock, body, runner = _build(mode, recipe, turns)
            finally:  # built or failed, every mode reaches the barrier: none waits for a dead one
                built.wait(timeout=START_TIMEOUT_S)
            clock.start()
            body()
            report.update(block_seconds=clock.block_seconds, block_parts=clock.block_parts)
            if runner is not None and mode.shards:
                report["actors_rss_mib"] = _actors_rss_mib(runner.group)
        except BaseException:  # reported; the other modes go on without this one
            report["error"] = traceback.format_exc()
        finally:
            turns.pass_on(mode.index, finished=True)
            report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            results.put(report)
            try:
                done.wait()
            except threading.BrokenBarrierError:
                pass
            if runner is not None:
                runner.close()


def _build(mode: _Mode, recipe: Recipe, turns: Turns):
    """The mode's clock, the body that trains, and (distmeta modes) the run to close after."""
    if mode.name == "loop":
        loop = LoopBaseline(recipe)
        clock = Clock(mode.index, turns, mode.steps, mode.blocks, lambda: loop.parts)
        return clock, lambda: _loop_body(loop, clock, (mode.blocks + 1) * mode.steps), None
    timer = StepTimer()
    # each mode its own store: concurrent processes would contend for one SQLite file
    uri = f"sqlite:///{mode.workdir / (mode.name + '.db')}"
    runner = DistmetaRun(mode.name, recipe, uri, mode.workdir, [timer])
    clock = timer.clock = Clock(
        mode.index, turns, mode.steps, mode.blocks, lambda: {**runner.learner.time_totals, "lightning": timer.lightning_s}
    )
    return clock, runner.fit, runner


_ORDER = (*STEP_PARTS, "lightning")


def _cpus_per_shard(threads: int, shards: int) -> int:
    """The single-process modes' threads, split among the shards: the same cores for every mode."""
    return max(1, threads // shards)


def _loop_body(loop: LoopBaseline, clock: Clock, total: int) -> None:
    for _ in range(total):
        loop.train_step()
        clock.tick()


def _actors_rss_mib(group) -> float:
    import psutil

    total = 0.0
    for info in group.workers_info():
        try:
            total += psutil.Process(int(info["pid"])).memory_info().rss / 2**20
        except (psutil.NoSuchProcess, KeyError, ValueError):
            pass
    return total


__all__ = ["WORKLOADS", "loop_step", "log_to_mlflow", "run", "table"]
