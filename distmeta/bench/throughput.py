"""``distmeta bench``: meta-training throughput against a plain per-task loop, in one process tree.

Modes, run in interleaved blocks of training steps so machine noise falls on all of them alike:

- ``loop``: the baseline the reference libraries use (learn2learn's ``clone()/adapt()``, higher's
  ``innerloop_ctx``): for each task of the meta-batch, adapt a copy of the weights with
  ``torch.autograd.grad(create_graph=True)``, add its query loss, then one backward and one Adam
  step. Written here, on the same model, tasks and hyper-parameters (``tests/bench`` checks its
  meta-gradient equals distmeta's).
- ``in-process``: distmeta's shard worker in the driver (``cluster.num_shards=0``), aggregation
  and the same Adam step.
- ``ray-<n>``: the same over ``n`` Ray shard actors (in-process Ray).

Each block reports tasks per second; the ratios to ``loop`` are taken block by block (so a slow
moment of the machine divides out) and summarised by median, min and max.
"""
from __future__ import annotations

import json
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.func import functional_call

from distmeta import builders, config
from distmeta.algorithms.base import LOSSES
from distmeta.config import DistMetaConfig
from distmeta.learner.aggregate import aggregate
from distmeta.models import flatten, unflatten
from distmeta.tasks import TRAIN, TaskBatch

WORKLOADS: dict[str, list[str]] = {
    # MAML sine (Finn et al. 5.1): MLP 40-40, 25 tasks, K=10, one second-order step, 1 thread per process
    "sine": ["tasks.family=sine", "model.name=mlp", "model.hidden=[40,40]", "algorithm.name=maml", "algorithm.inner_steps=1",
             "algorithm.inner_lr=0.01", "algorithm.meta_batch_size=25", "tasks.shots=10", "tasks.query=10",
             "cluster.cpus_per_shard=1"],
    # Conv4 5-way 1-shot 28x28, 15 queries per class, 32 tasks, one second-order step
    "conv4-5w1s": ["tasks.family=glyphs", "model.name=conv4", "model.filters=64", "algorithm.name=maml", "algorithm.inner_steps=1",
                   "algorithm.inner_lr=0.4", "algorithm.meta_batch_size=32", "tasks.ways=5", "tasks.shots=1", "tasks.query=15",
                   "cluster.cpus_per_shard=1"],
}
THREADS = {"sine": 1, "conv4-5w1s": 2}
"""Torch threads of the single-process modes (the baseline and in-process distmeta)."""


@dataclass
class ModeStats:
    tasks_per_s: list[float] = field(default_factory=list)
    split_s: dict[str, float] = field(default_factory=dict)  # summed over measured steps
    steps: int = 0

    def add_split(self, parts: dict[str, float]) -> None:
        for k, v in parts.items():
            self.split_s[k] = self.split_s.get(k, 0.0) + v
        self.steps += 1


def loop_step(model: torch.nn.Module, opt: torch.optim.Optimizer, tasks: TaskBatch, loss_name: str, lr: float,
              steps: int, first_order: bool) -> float:
    """One meta-step the per-task way; returns the mean query loss."""
    loss_fn = LOSSES[loss_name]
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    opt.zero_grad(set_to_none=True)
    total = torch.zeros(())
    for i in range(len(tasks)):
        sx, sy, qx, qy = (t[i] for t in tasks.tensors())
        fast = params
        for _ in range(steps):
            inner = loss_fn(functional_call(model, dict(zip(names, fast)), (sx,)), sy)
            grads = torch.autograd.grad(inner, fast, create_graph=not first_order)
            fast = [w - lr * g for w, g in zip(fast, grads)]
        total = total + loss_fn(functional_call(model, dict(zip(names, fast)), (qx,)), qy)
    meta_loss = total / len(tasks)
    meta_loss.backward()
    opt.step()
    return meta_loss.item()


class Runner:
    """One mode's training state: its own model copy, optimizer and step counter."""

    def __init__(self, name: str, cfg: DistMetaConfig, group=None):
        self.name, self.cfg, self.group = name, cfg, group
        self.model = builders.model(cfg)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.algorithm.meta_lr, foreach=True)
        self.step = 0
        if group is None:
            fam = builders.family(cfg, "train")
            data = builders.data(cfg, "train")
            self.family = fam if data is None else fam.with_data(data)
        else:
            self.planner = builders.learner_settings(cfg).planner

    def run(self, steps: int, stats: ModeStats, measure: bool) -> float:
        """``steps`` meta-steps; returns their wall time."""
        start = time.perf_counter()
        for _ in range(steps):
            parts = self._loop_step() if self.group is None else self._distmeta_step()
            if measure:
                stats.add_split(parts)
            self.step += 1
        return time.perf_counter() - start

    def _loop_step(self) -> dict[str, float]:
        a = self.cfg.algorithm
        t0 = time.perf_counter()
        tasks = self.family.sample(self.cfg.seed, TRAIN, self.step, range(a.meta_batch_size))
        t1 = time.perf_counter()
        loss = "cross_entropy" if builders.is_image(self.cfg) else "mse"
        loop_step(self.model, self.opt, tasks, loss, a.inner_lr, a.inner_steps, a.first_order)
        return {"sample": t1 - t0, "meta-gradient + optimizer": time.perf_counter() - t1}

    def _distmeta_step(self) -> dict[str, float]:
        params = dict(self.model.named_parameters())
        weights = flatten({k: p.detach() for k, p in params.items()})
        t0 = time.perf_counter()
        results = self.group.compute(self.step, weights, self.step, self.planner.plan(self.step))
        t1 = time.perf_counter()
        agg = aggregate(results, step=self.step, version=self.step, weighting=self.cfg.tasks.family_weighting)
        t2 = time.perf_counter()
        for name, g in unflatten(agg.grad, params).items():
            params[name].grad = g
        self.opt.step()
        t3 = time.perf_counter()
        shard_s = max(r.seconds for r in results)
        sample_s = max(r.sample_seconds for r in results)
        return {"sample": sample_s, "meta-gradient": shard_s - sample_s, "ray round trip": max(0.0, (t1 - t0) - shard_s),
                "aggregation": t2 - t1, "optimizer": t3 - t2}


def run(workload: str, overrides: list[str] = (), blocks: int = 5, steps: int = 10, shards: int = 2,
        log: Callable[[str], None] = lambda s: None) -> dict:
    """Warm-up block, then ``blocks`` measured blocks of ``steps`` meta-steps per mode, interleaved."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload '{workload}'; known: {', '.join(WORKLOADS)}")
    base = [*WORKLOADS[workload], "algorithm.compile=false", "trainer.progress_bar=false", *overrides]
    threads = THREADS[workload]
    torch.set_num_threads(threads)
    cfg0 = config.load(None, [*base, "cluster.num_shards=0"])
    runners = [Runner("loop", cfg0), Runner("in-process", cfg0, builders.shard_group(cfg0))]
    started_ray = False
    if shards > 0:
        import ray

        counts = sorted({1, shards})
        if not ray.is_initialized():
            # the Ray modes hold their actors all along but never compute at the same time: Ray is
            # given as many logical CPUs as the actors reserve, the physical cores are shared in turn
            import os

            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=sum(counts), include_dashboard=False, logging_level="WARNING")
            started_ray = True
        for n in counts:
            cfg = config.load(None, [*base, f"cluster.num_shards={n}"])
            runners.append(Runner(f"ray-{n}", cfg, builders.shard_group(cfg)))
    stats = {r.name: ModeStats() for r in runners}
    try:
        tasks = cfg0.algorithm.meta_batch_size
        for block in range(blocks + 1):  # block 0 warms up (first calls, allocator, Ray connections)
            seconds = {r.name: r.run(steps, stats[r.name], measure=block > 0) for r in runners}
            if block == 0:
                continue
            for name, s in seconds.items():
                stats[name].tasks_per_s.append(steps * tasks / s)
            log(f"block {block}: " + ", ".join(f"{n} {steps * tasks / s:,.0f} tasks/s" for n, s in seconds.items()))
        actors_rss = {r.name: _actors_rss_mib(r.group) for r in runners if r.name.startswith("ray-")}
    finally:
        for r in runners:
            if r.group is not None:
                r.group.close()
        if started_ray:
            import ray

            ray.shutdown()
    loop = stats["loop"].tasks_per_s
    out = {
        "workload": workload, "overrides": list(overrides), "blocks": blocks, "steps_per_block": steps,
        "meta_batch_size": cfg0.algorithm.meta_batch_size, "threads": threads, "torch": torch.__version__,
        "driver_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "modes": {},
    }
    for name, st in stats.items():
        ratios = [a / b for a, b in zip(st.tasks_per_s, loop)]
        out["modes"][name] = {
            "tasks_per_s": _summary(st.tasks_per_s),
            "ratio_to_loop": _summary(ratios),
            "ms_per_step": {k: 1000 * v / max(st.steps, 1) for k, v in st.split_s.items()},
            **({"actors_rss_mib": actors_rss[name]} if name in actors_rss else {}),
        }
    return out


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
    lines = [f"distmeta bench {report['workload']}: {report['meta_batch_size']} tasks per meta-step, "
             f"{report['blocks']} blocks of {report['steps_per_block']} steps after a warm-up block, "
             f"{report['threads']} torch thread(s) in single-process modes",
             f"{'mode':<12}{'tasks/s median':>16}{'min':>10}{'max':>10}{'x loop (median, min-max)':>28}   time per step (ms)"]
    for name, m in report["modes"].items():
        t, r = m["tasks_per_s"], m["ratio_to_loop"]
        split = ", ".join(f"{k} {v:.2f}" for k, v in m["ms_per_step"].items())
        lines.append(f"{name:<12}{t['median']:>16,.0f}{t['min']:>10,.0f}{t['max']:>10,.0f}"
                     f"{r['median']:>14.2f} ({r['min']:.2f}-{r['max']:.2f})".ljust(40) + f"   {split}")
    lines.append(f"driver peak RSS {report['driver_peak_rss_mib']:.0f} MiB"
                 + "".join(f"; {n} actors {m['actors_rss_mib']:.0f} MiB" for n, m in report["modes"].items() if "actors_rss_mib" in m))
    return "\n".join(lines)


def log_to_mlflow(report: dict, uri: str, experiment: str = "distmeta-bench") -> str:
    """The report as one MLflow run: workload settings as params, per-mode numbers as metrics,
    the JSON as an artifact. Returns the run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=f"bench-{report['workload']}")
    rid = run.info.run_id
    for k in ("workload", "blocks", "steps_per_block", "meta_batch_size", "threads", "torch"):
        client.log_param(rid, k, report[k])
    for name, m in report["modes"].items():
        for stat, v in m["tasks_per_s"].items():
            client.log_metric(rid, f"{name}/tasks_per_s.{stat}", v)
        for stat, v in m["ratio_to_loop"].items():
            client.log_metric(rid, f"{name}/ratio_to_loop.{stat}", v)
    client.log_text(rid, json.dumps(report, indent=2), "bench.json")
    client.set_terminated(rid)
    return rid


__all__ = ["WORKLOADS", "loop_step", "log_to_mlflow", "run", "table"]
