"""``distmeta bench``: meta-training throughput against a plain per-task loop, in one process tree.

Modes (:mod:`distmeta.bench.modes`), each training its own copy of the same model on the same
task stream:

- ``loop``: the per-task baseline (learn2learn / higher style);
- ``in-process``: ``distmeta train`` with ``cluster.num_shards=0``: the shard worker in the driver,
  the ``MetaLearner`` in Lightning's ``Trainer``, metrics through the asynchronous MLflow logger;
- ``ray-<n>``: the same over ``n`` Ray shard actors, with its own embedded Ray (as ``distmeta train``).

Every mode runs in its own process, on that process's main thread as ``distmeta train`` runs
(OpenMP teams of other threads were measured 15-40% slower on conv4), and only the one holding
the turn computes (:class:`Turns`): after a warm-up block, the modes take turns running blocks of
meta-steps, so machine noise falls on all of them alike. Each block gives tasks per second; the
ratios to ``loop`` are taken block by block and summarised by median, min and max.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import resource
import shutil
import statistics
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch

from distmeta import config
from distmeta.bench.modes import DistmetaRun, LoopBaseline, loop_step
from distmeta.runtime import start_ray
from distmeta.tracking.names import STEP_PARTS

WORKLOADS: dict[str, list[str]] = {
    # MAML sine (Finn et al. 5.1): MLP 40-40, 25 tasks, K=10, one second-order step, 1 thread per
    # process; compiled as configs/sine_maml.yaml trains it (the shards compile in the warm-up block)
    "sine": [
        "tasks.family=sine",
        "model.name=mlp",
        "model.hidden=[40,40]",
        "algorithm.name=maml",
        "algorithm.inner_steps=1",
        "algorithm.inner_lr=0.01",
        "algorithm.meta_batch_size=25",
        "tasks.shots=10",
        "tasks.query=10",
        "algorithm.compile=true",
        "cluster.cpus_per_shard=1",
    ],
    # Conv4 5-way 1-shot 28x28, 15 queries per class, 32 tasks, one second-order step
    "conv4-5w1s": [
        "tasks.family=glyphs",
        "model.name=conv4",
        "model.filters=64",
        "algorithm.name=maml",
        "algorithm.inner_steps=1",
        "algorithm.inner_lr=0.4",
        "algorithm.meta_batch_size=32",
        "tasks.ways=5",
        "tasks.shots=1",
        "tasks.query=15",
        "cluster.cpus_per_shard=1",
    ],
}
THREADS = {"sine": 1, "conv4-5w1s": 2}
"""Torch threads of the single-process modes (the baseline and in-process distmeta)."""


_SPAWN = multiprocessing.get_context("spawn")  # no fork: the parent may hold Ray's threads


class Turns:
    """Round-robin turns between the modes' processes (or threads): one computes, the others
    wait. A mode that finished or failed is skipped."""

    def __init__(self, count: int):
        self._cond = _SPAWN.Condition()
        self._current = _SPAWN.Value("i", 0, lock=False)  # guarded by _cond
        self._active = _SPAWN.Array("b", [1] * count, lock=False)

    def wait(self, i: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._current.value == i)

    def pass_on(self, i: int, finished: bool = False) -> None:
        """Hand the turn to the next active mode; ``finished``: ``i`` takes no more turns (a mode
        that fails before its first turn only leaves, the turn stays where it is)."""
        with self._cond:
            if finished:
                self._active[i] = 0
            if self._current.value != i:
                return
            n = len(self._active)
            nxt = next(((i + j) % n for j in range(1, n + 1) if self._active[(i + j) % n]), None)
            self._current.value = -1 if nxt is None else nxt
            self._cond.notify_all()


@dataclass
class Clock:
    """One mode's blocks: ``tick()`` after each meta-step; at a block's end it records the block
    and hands the turn on, and returns when the turn comes back."""

    index: int
    turns: Turns
    steps: int
    blocks: int
    parts: Callable[[], dict[str, float]]
    """Cumulative seconds per part of a step, as the mode measures them."""
    block_seconds: list[float] = field(default_factory=list)
    block_parts: list[dict[str, float]] = field(default_factory=list)
    _in_block: int = 0
    _started: float = 0.0
    _parts_at_start: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.turns.wait(self.index)
        self._begin()

    def _begin(self) -> None:
        self._in_block = 0
        self._parts_at_start = dict(self.parts())
        self._started = time.perf_counter()

    def tick(self) -> None:
        if len(self.block_seconds) > self.blocks:  # past the last block (the run's logged extra step)
            return
        self._in_block += 1
        if self._in_block < self.steps:
            return
        self.block_seconds.append(time.perf_counter() - self._started)
        now = self.parts()
        self.block_parts.append({k: v - self._parts_at_start.get(k, 0.0) for k, v in now.items()})
        if len(self.block_seconds) == self.blocks + 1:  # block 0 warms up; the thread passes on when it ends
            return
        self.turns.pass_on(self.index)
        self.turns.wait(self.index)
        self._begin()


class _StepTimer(pl.Callback):
    """Ticks the clock after every meta-step and measures Lightning's own share: the time between
    one training step's end and the next one's start (loop, callbacks, checkpoint checks)."""

    def __init__(self):
        self.clock: Clock | None = None
        self.lightning_s = 0.0
        self._ended: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._ended is not None:
            self.lightning_s += time.perf_counter() - self._ended

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.clock.tick()
        self._ended = time.perf_counter()  # after the tick: a wait for the turn is nobody's time


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
    cfg0 = config.load(None, [*base, "cluster.num_shards=0"])  # checks the overrides before anything starts
    counts = sorted({1, shards}) if shards > 0 else []
    workdir = Path(tempfile.mkdtemp(prefix="distmeta-bench-"))
    try:
        modes = [_Mode(0, "loop", tuple(base), 0, threads, steps, blocks, workdir)]
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
    names = [r["name"] for r in reports]
    per_mode = {r["name"]: [steps * cfg0.algorithm.meta_batch_size / s for s in r["block_seconds"][1:]] for r in reports}
    for b in range(blocks):
        log(f"block {b + 1}: " + ", ".join(f"{n} {v[b]:,.0f} tasks/s" for n, v in per_mode.items()))
    out = {
        "workload": workload,
        "overrides": list(overrides),
        "blocks": blocks,
        "steps_per_block": steps,
        "meta_batch_size": cfg0.algorithm.meta_batch_size,
        "threads": threads,
        "torch": torch.__version__,
        "modes": {},
    }
    for name, r in zip(names, reports):
        measured = r["block_parts"][1:]
        parts = {k: sum(p.get(k, 0.0) for p in measured) for k in measured[0]}
        ratios = [a / b for a, b in zip(per_mode[name], per_mode["loop"])]
        out["modes"][name] = {
            "tasks_per_s": _summary(per_mode[name]),
            "ratio_to_loop": _summary(ratios),
            "ms_per_step": {k: 1000 * parts[k] / (blocks * steps) for k in (*_ORDER, *parts) if k in parts},
            "peak_rss_mib": r["peak_rss_mib"],
            **({"actors_rss_mib": r["actors_rss_mib"]} if "actors_rss_mib" in r else {}),
        }
    return out


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
    # as distmeta train does: with Ray shards the learner runs one torch thread (distmeta.api)
    torch.set_num_threads(mode.threads if mode.shards == 0 else 1)
    report: dict = {"index": mode.index, "name": mode.name}
    runner = None
    try:
        try:
            cfg = config.load(None, list(mode.overrides))
            if mode.shards:  # its own embedded Ray, started as `distmeta train` starts it on a laptop
                os.environ.pop("RAY_ADDRESS", None)
                start_ray("")
            if mode.name == "loop":
                loop = LoopBaseline(cfg)
                clock = Clock(mode.index, turns, mode.steps, mode.blocks, lambda: loop.parts)
                body = lambda: _loop_body(loop, clock, (mode.blocks + 1) * mode.steps)  # noqa: E731
            else:
                timer = _StepTimer()
                # each mode its own store: concurrent processes would contend for one SQLite file
                uri = f"sqlite:///{mode.workdir / (mode.name + '.db')}"
                runner = DistmetaRun(mode.name, cfg, uri, mode.workdir, [timer])
                clock = timer.clock = Clock(
                    mode.index,
                    turns,
                    mode.steps,
                    mode.blocks,
                    lambda: {**runner.learner.time_totals, "lightning": timer.lightning_s},
                )
                body = runner.fit
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
        if mode.shards:
            import ray

            ray.shutdown()


_ORDER = (*STEP_PARTS, "lightning")


def _cpus_per_shard(threads: int, shards: int) -> int:
    """The single-process modes' threads, split among the shards: the same cores for every mode."""
    return max(1, threads // shards)


def _loop_body(loop: LoopBaseline, clock: Clock, total: int) -> None:
    for _ in range(total):
        loop.train_step()
        clock.tick()


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _actors_rss_mib(group) -> float:
    import psutil

    total = 0.0
    for info in group.workers_info():
        try:
            total += psutil.Process(int(info["pid"])).memory_info().rss / 2**20
        except (psutil.NoSuchProcess, KeyError, ValueError):
            pass
    return total


def table(report: dict) -> str:
    lines = [
        f"distmeta bench {report['workload']}: {report['meta_batch_size']} tasks per meta-step, "
        f"{report['blocks']} blocks of {report['steps_per_block']} steps after a warm-up block, "
        f"{report['threads']} torch thread(s) in single-process modes",
        f"{'mode':<12}{'tasks/s median':>16}{'min':>10}{'max':>10}{'x loop (median, min-max)':>28}   time per step (ms)",
    ]
    for name, m in report["modes"].items():
        t, r = m["tasks_per_s"], m["ratio_to_loop"]
        split = ", ".join(f"{k} {v:.2f}" for k, v in m["ms_per_step"].items())
        lines.append(
            f"{name:<12}{t['median']:>16,.0f}{t['min']:>10,.0f}{t['max']:>10,.0f}"
            f"{r['median']:>14.2f} ({r['min']:.2f}-{r['max']:.2f})".ljust(40)
            + f"   {split}"
        )
    lines.append(
        "peak RSS (MiB): "
        + "; ".join(
            f"{n} {m['peak_rss_mib']:.0f}" + (f" + actors {m['actors_rss_mib']:.0f}" if "actors_rss_mib" in m else "")
            for n, m in report["modes"].items()
        )
    )
    return "\n".join(lines)


def log_to_mlflow(report: dict, uri: str, experiment: str = "distmeta-bench") -> str:
    """A report (throughput or time to accuracy) as one MLflow run: its top-level settings as
    params, each mode's numbers as metrics ``<mode>/<name>[.<stat>]``, the JSON as an artifact.
    Returns the run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    name = f"bench-{report['workload']}" if "workload" in report else f"time-to-accuracy-{Path(report['config']).stem}"
    rid = client.create_run(exp_id, run_name=name).info.run_id
    for k, v in report.items():
        if isinstance(v, (str, int, float)):
            client.log_param(rid, k, v)
    for mode, numbers in report["modes"].items():
        for key, v in _numeric_leaves(numbers):
            client.log_metric(rid, f"{mode}/{key}", v)
    client.log_text(rid, json.dumps(report, indent=2), "bench.json")
    client.set_terminated(rid)
    return rid


def _numeric_leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _numeric_leaves(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float)):  # bools too (reached: 1/0); None and lists are left out
            yield f"{prefix}{k}", float(v)


__all__ = ["WORKLOADS", "loop_step", "log_to_mlflow", "run", "table"]
