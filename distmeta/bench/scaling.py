"""``distmeta bench --scaling``: what crosses the wire per meta-step and where its time goes, in
both aggregation modes at 1, 2 and 4 shards; the all-reduce's time against its payload on this
machine (gloo between Ray actors, as the replicas form it); then the cost model
(:mod:`distmeta.bench.costmodel`) with those constants, checked against the measured steps, and
projected to GPUs (:mod:`distmeta.bench.projection`).

The bytes are the wire module's counts (``wire.Traffic`` of the learner's group; the payload each
replica hands to its collective), not estimates. The time split is the learner's own ``time/``
parts: ``compute`` (sampling and meta-gradient, slowest shard), ``all_reduce`` (the replicas'
reduction; in learner mode the learner's sum of the rows), ``apply`` (clip and Adam),
``exchange`` (the rest of the learner's wait on its shards: Ray calls, and in learner mode the
weights out and the rows back) and ``other`` (Lightning and the logging window).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl

from distmeta import config
from distmeta.bench import costmodel, projection, sweeps, throughput
from distmeta.bench.modes import DistmetaRun
from distmeta.recipe import Recipe

SHARDS = (1, 2, 4)
MODES = ("learner", "allreduce")
WORKLOADS = ("conv4-5w1s", "resnet12-cfs-5w1s")


class _StepLog(pl.Callback):
    """After every meta-step: the learner's bytes through its group so far, its time parts, the clock."""

    def __init__(self):
        self.rows: list[tuple[int, int, dict[str, float], float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        t = pl_module.group.traffic
        self.rows.append((t.sent, t.received, dict(pl_module.time_totals), time.perf_counter()))


def _per_step(rows: list, first: int, last: int) -> dict[str, float]:
    """Means per step over steps ``first`` (exclusive) .. ``last`` (inclusive) of the log."""
    (s0, r0, p0, t0), (s1, r1, p1, t1) = rows[first], rows[last]
    k = last - first
    parts = {p: (p1.get(p, 0.0) - p0.get(p, 0.0)) / k for p in p1}
    return {"sent": (s1 - s0) / k, "received": (r1 - r0) / k, "wall": (t1 - t0) / k, **parts}


def split(parts: dict[str, float], mode: str) -> dict[str, float]:
    """The learner's parts of one step as compute / all_reduce / apply / exchange / other, in ms."""
    compute = parts.get("sample", 0.0) + parts.get("meta_gradient", 0.0)
    reduce, apply, wait = parts.get("aggregation", 0.0), parts.get("optimizer", 0.0), parts.get("shard_wait", 0.0)
    # learner mode: the wait holds the shards' compute and the transfers, the sum and Adam follow
    # in the learner; all-reduce mode: the wait holds the replicas' compute, reduction and Adam too
    inside = compute + (reduce + apply if mode == "allreduce" else 0.0)
    exchange = max(wait - inside, 0.0)
    other = max(parts["wall"] - compute - reduce - apply - exchange, 0.0)
    ms = {"compute": compute, "all_reduce": reduce, "apply": apply, "exchange": exchange, "other": other}
    return {f"{k}_ms": 1e3 * v for k, v in ms.items()}


def measure_step(workload: str, mode: str, shards: int, steps: int, overrides: list[str], data: str | None) -> dict:
    """``steps`` + 2 meta-steps of the workload (one to warm up; the last syncs the replicas'
    state to the learner): bytes and time per ordinary step, and the bytes of the syncing one."""
    cores = _cores()
    over = [*throughput.WORKLOADS[workload], "trainer.progress_bar=false", f"trainer.max_steps={steps + 2}",
            f"trainer.val_every_n_steps={steps + 10}", f"trainer.log_every_n_steps={steps + 2}",
            f"checkpoint.every_n_steps={steps + 10}", f"cluster.num_shards={shards}", f"cluster.aggregation={mode}",
            f"cluster.cpus_per_shard={max(cores // shards, 1) if shards <= cores else 0.5}",
            *([f"tasks.root={data}"] if data else []), *overrides]  # fmt: skip
    recipe = Recipe.from_config(config.load(None, over))
    workdir = Path(tempfile.mkdtemp(prefix="distmeta-scaling-"))
    log = _StepLog()
    try:
        with recipe.runtime():
            run = DistmetaRun(f"{mode}-{shards}", recipe, f"sqlite:///{workdir / 'm.db'}", workdir, [log])
            try:
                run.fit()
                reduced = _reduced_bytes(run.group) if mode == "allreduce" else []
                weights = sum(p.numel() for p in run.learner.model.parameters()) * costmodel.BYTES
            finally:
                run.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    plain, last = _per_step(log.rows, 0, steps), _per_step(log.rows, steps, steps + 1)
    out = {"workload": workload, "mode": mode, "shards": shards, "weights_bytes": weights, "wall_ms": 1e3 * plain["wall"],
           "learner_sent": plain["sent"], "learner_received": plain["received"],
           "sync_learner_sent": last["sent"], "sync_learner_received": last["received"], **split(plain, mode),
           "actor_sent_to_learner": plain["received"] / shards, "actor_received_from_learner": plain["sent"] / shards}  # fmt: skip
    payload = statistics.median(reduced) / (steps + 2) if reduced else 0.0  # the replicas' own count
    out.update(actor_allreduce_payload=payload, actor_ring_bytes=2 * (shards - 1) / shards * payload)
    return out


def _cores() -> int:
    """The CPUs the shards may take: the running Ray's (a test's may hold fewer than the machine), else the machine's."""
    import ray

    return int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else (os.cpu_count() or 2)


def _reduced_bytes(group) -> list[int]:
    import ray

    return ray.get([h.reduced_bytes.remote() for h in group.actors], timeout=60)


def run(workloads: tuple[str, ...] = WORKLOADS, steps: int = 3, overrides: list[str] = (),
        log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """The sweep, then every workload in both modes at :data:`SHARDS`, then the model."""
    import ray

    own = not ray.is_initialized()
    if own:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        links, answers, compiled = sweeps.all_reduce(), sweeps.calls(), sweeps.calls((1, 2, 4), compiled=True)
        driven = sweeps.replicated()
    finally:
        if own:
            ray.shutdown()
    for r in links:
        log(f"gloo all-reduce, {r['ranks']} processes: {r['latency_s'] * 1e6:.0f} us per hop, {r['bandwidth'] / 1e9:.2f} GB/s")
    e0, e1 = answers["exchange_s"]
    (c0, c1) = compiled["exchange_s"]
    log(f"the learner's calls: {1e3 * e0:.2f} ms + {1e3 * e1:.2f} ms per actor of its CPU a step; "
        f"through a compiled graph {1e3 * c0:.2f} + {1e3 * c1:.2f} ms")  # fmt: skip
    t, c = driven["tasks"], driven["compiled"]
    log(f"replicated sine steps on {driven['actors']} actors: by actor tasks {1e3 * t['wall_s']:.1f} ms a step "
        f"({1e3 * t['cpu_s']:.1f} ms of the learner's CPU), through a compiled graph {1e3 * c['wall_s']:.1f} ms "
        f"({1e3 * c['cpu_s']:.1f}); the same bits: {driven['same_bits']}")  # fmt: skip
    rows = []
    data_root = Path(tempfile.mkdtemp(prefix="distmeta-scaling-data-"))
    try:
        for workload in workloads:
            data = str(throughput.DATA[workload](data_root / workload)) if workload in throughput.DATA else None
            for mode in MODES:
                for n in SHARDS:
                    r = measure_step(workload, mode, n, steps, list(overrides), data)
                    log(f"{workload} {mode} {n}: the learner sent {r['learner_sent']:,.0f} B and received "
                        f"{r['learner_received']:,.0f} B a step; {r['wall_ms']:.0f} ms a step, {r['compute_ms']:.0f} "
                        f"compute, {r['all_reduce_ms']:.1f} reduce, {r['exchange_ms']:.1f} exchange")  # fmt: skip
                    rows.append(r)
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    fitted = constants(links, answers, rows)
    fitted["compiled_exchange_s"] = compiled["exchange_s"]
    proj = projection.project(tuple(fitted["exchange_s"]), fitted["learner_memory_bandwidth"], tuple(compiled["exchange_s"]))
    return {"links": links, "calls": answers, "compiled_calls": compiled, "replicated_steps": driven, "steps": rows,
            "constants": fitted, "checks": checks(links, fitted, rows), "projection": proj}  # fmt: skip


def constants(links: list[dict], answers: dict, rows: list[dict]) -> dict:
    """The model's constants from this machine: the link fitted on the most processes; the
    exchange ``e0 + e1 n``, the learner's CPU per round of calls (on 2 cores the training runs'
    own exchange also holds the actors' share of the cores: the tables give both); the learner's
    bandwidth adding rows."""
    biggest = max(links, key=lambda r: r["ranks"])
    ar = [r for r in rows if r["mode"] == "allreduce"]
    exchange = answers["exchange_s"]
    in_runs = costmodel.fit_exchange([r["shards"] for r in ar], [r["exchange_ms"] / 1e3 for r in ar])
    summed = [(r["shards"] * r["weights_bytes"], r["all_reduce_ms"] / 1e3) for r in rows if r["mode"] == "learner"]
    memory = sum(b for b, _ in summed) / max(sum(s for _, s in summed), 1e-9)
    return {"link": {"latency_s": biggest["latency_s"], "bandwidth": biggest["bandwidth"], "ranks": biggest["ranks"]},
            "exchange_s": list(exchange), "exchange_in_runs_s": list(in_runs), "learner_memory_bandwidth": memory}  # fmt: skip


def checks(links: list[dict], fitted: dict, rows: list[dict]) -> list[dict]:
    """The model against each measured all-reduce step, its compute and Adam taken as measured:
    the reduction from the link the sweep fitted on as many processes (else on the most), the
    exchange from the runs' own fit."""
    fits = {r["ranks"]: costmodel.Link("gloo", r["latency_s"], r["bandwidth"], "measured") for r in links}
    out = []
    for r in (r for r in rows if r["mode"] == "allreduce"):
        link = fits.get(r["shards"], fits[max(fits)])
        params = int(r["actor_allreduce_payload"] // costmodel.BYTES)
        c = costmodel.Costs(
            r["workload"], params, r["compute_ms"] / 1e3, r["apply_ms"] / 1e3, tuple(fitted["exchange_in_runs_s"])
        )
        model = costmodel.step_s(c, link, r["shards"], 1)
        measured = r["compute_ms"] + r["all_reduce_ms"] + r["apply_ms"] + r["exchange_ms"]
        out.append({"workload": r["workload"], "shards": r["shards"], "all_reduce_ms": r["all_reduce_ms"],
                    "all_reduce_ms_model": 1e3 * model["all_reduce"], "step_ms": measured,
                    "step_ms_model": 1e3 * model["total"]})  # fmt: skip
    return out


def table(report: dict) -> str:
    """The report as Markdown: the sweep, bytes and time per step, the model's check, the projection."""
    out = ["| ranks | payload | all-reduce ms |", "|---|---|---|"]
    for r in report["links"]:
        out += [f"| {r['ranks']} | {s / 1024:,.0f} KiB | {1e3 * t:.2f} |" for s, t in zip(r["sizes"], r["seconds"])]
    out += ["", "| calls | actors called | wall ms a round | the learner's CPU ms a round |", "|---|---|---|---|"]
    for calls in (report["calls"], report["compiled_calls"]):
        kind = "compiled graph" if calls["compiled"] else "actor tasks"
        out += [
            f"| {kind} | {n} | {1e3 * w:.2f} | {1e3 * c:.2f} |"
            for n, w, c in zip(calls["counts"], calls["wall_s"], calls["cpu_s"])
        ]
    d = report["replicated_steps"]
    out += [
        "",
        f"| replicated sine steps, {d['actors']} actors | wall ms a step | the learner's CPU ms a step |",
        "|---|---|---|",
    ]
    out += [f"| {how} | {1e3 * d[how]['wall_s']:.2f} | {1e3 * d[how]['cpu_s']:.2f} |" for how in ("tasks", "compiled")]
    out.append(f"\nBoth ways end at the same bits: {d['same_bits']}.")
    k = report["constants"]
    (e0, e1), (r0, r1) = k["exchange_s"], k["exchange_in_runs_s"]
    out += ["", f"Fitted: ring latency {1e6 * k['link']['latency_s']:.0f} us a hop, bandwidth {k['link']['bandwidth'] / 1e9:.2f} GB/s "
            f"({k['link']['ranks']} processes); the learner's calls {1e3 * e0:.2f} + {1e3 * e1:.3f} ms per actor (its CPU), "
            f"in the training runs {1e3 * r0:.2f} + {1e3 * r1:.3f} ms; rows added at {k['learner_memory_bandwidth'] / 1e9:.2f} GB/s."]  # fmt: skip
    out += ["", "| workload | aggregation | shards | learner sent / received a step | on a sync step | per actor: "
            "from / to the learner, ring each way | ms a step: compute / all-reduce / apply / exchange / other |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["steps"]:
        out.append(
            f"| {r['workload']} | {r['mode']} | {r['shards']} | {_b(r['learner_sent'])} / {_b(r['learner_received'])} | "
            f"{_b(r['sync_learner_sent'])} / {_b(r['sync_learner_received'])} | {_b(r['actor_received_from_learner'])} / "
            f"{_b(r['actor_sent_to_learner'])}, {_b(r['actor_ring_bytes'])} | "
            + " / ".join(f"{r[p + '_ms']:.1f}" for p in ("compute", "all_reduce", "apply", "exchange", "other")) + " |"
        )  # fmt: skip
    out += ["", "| workload | shards | all-reduce ms measured / model | step ms measured / model |", "|---|---|---|---|"]
    out += [f"| {c['workload']} | {c['shards']} | {c['all_reduce_ms']:.2f} / {c['all_reduce_ms_model']:.2f} | "
            f"{c['step_ms']:.1f} / {c['step_ms_model']:.1f} |" for c in report["checks"]]  # fmt: skip
    return "\n".join([*out, "", projection.table(report["projection"])])


def _b(n: float) -> str:
    """Bytes, readably."""
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


__all__ = ["MODES", "SHARDS", "WORKLOADS", "checks", "constants", "measure_step", "run", "split", "table"]
