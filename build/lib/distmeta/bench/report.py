"""``distmeta bench`` reports: per-mode summaries, the printed table, the MLflow run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def modes(reports: list[dict], per_mode: dict[str, list[float]], measured_steps: int, order: tuple[str, ...]) -> dict:
    """Per mode: tasks/s and the block-by-block ratio to the loop (median, min, max), ms per step
    by part (in ``order`` first), peak memory."""
    out = {}
    for r in reports:
        name, measured = r["name"], r["block_parts"][1:]
        parts = {k: sum(p.get(k, 0.0) for p in measured) for k in measured[0]}
        ratios = [a / b for a, b in zip(per_mode[name], per_mode["loop"])]
        out[name] = {
            "tasks_per_s": summary(per_mode[name]),
            "ratio_to_loop": summary(ratios),
            "ms_per_step": {k: 1000 * parts[k] / measured_steps for k in (*order, *parts) if k in parts},
            "peak_rss_mib": r["peak_rss_mib"],
            **({"actors_rss_mib": r["actors_rss_mib"]} if "actors_rss_mib" in r else {}),
        }
    return out


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
