"""The cost model (:mod:`distmeta.bench.costmodel`) projected to GPUs: step time and weak-scaling
efficiency at 8, 64 and 256 GPUs for conv4 5w1s and ResNet-12 5w1s/5w5s, both aggregation modes.

Where each constant comes from:

- compute per task: measured on one H200 (:data:`H200_TASKS_PER_S`, ``scripts/gpu_check.sh``,
  docs/performance.md); ResNet-12 5w5s was not measured, so it is the 5w1s rate scaled by the
  ratio of their FLOPs per task (:mod:`distmeta.bench.flops`);
- clip and Adam on a replica: reading and writing the parameters, gradient and moments once
  each (:data:`APPLY_TOUCHES` passes) at the H200's published HBM bandwidth;
- the collective: NCCL's published bus bandwidth (``costmodel.GPU_LINKS``: NVLink in a node of 8,
  the network past it);
- the learner's exchange ``e0 + e1 n`` and its bandwidth adding rows (learner mode): measured by
  ``distmeta bench --scaling`` on the machine that runs it (its CPU per round of Ray calls, as
  actor tasks, which the all-reduce group makes, and through a compiled graph, which it could);
- the learner's network (learner mode): one 100 Gb/s NIC, an assumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distmeta.bench import costmodel, flops
from distmeta.models import ModelSpec

DEVICES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TABLE_DEVICES = (8, 64, 256)
H200_TASKS_PER_S = {"conv4-5w1s": 874.0, "resnet12-84-5w1s": 17.0}
"""Measured, one H200, ``python -m distmeta.bench.kernels`` (distmeta vmap, second order, one
inner step; conv4 with 32 tasks a step, ResNet-12 with 4), 2026-12-04, docs/performance.md."""
HBM_BANDWIDTH = 4.8e12
"""Published: H200 SXM, HBM3e."""
APPLY_TOUCHES = 10
"""Passes over P floats in clip + Adam: the norm reads the gradient, the scale reads and writes
it, Adam reads parameter, gradient and both moments and writes parameter and moments."""


@dataclass(frozen=True)
class GpuWorkload:
    name: str
    params: int
    task_s: float
    source: str
    tasks_per_gpu: tuple[int, ...] = (1, 2, 4)


def _params(spec: ModelSpec) -> int:
    return sum(p.numel() for p in spec.build().to("meta").parameters())


def workloads() -> list[GpuWorkload]:
    conv4, resnet = ModelSpec("conv4", (1, 28, 28), 5, filters=64), flops.resnet12_84()
    ratio = flops.task_flops(resnet, shots=5) / flops.task_flops(resnet, shots=1)
    rate, conv = H200_TASKS_PER_S["resnet12-84-5w1s"], H200_TASKS_PER_S["conv4-5w1s"]
    return [
        GpuWorkload("conv4 5w1s", _params(conv4), 1 / conv, f"measured: {conv:g} tasks/s on one H200 (32 tasks a step)",
                    (4, 32)),  # a conv4 task is 1 ms of an H200: it takes the measured batch to fill it
        GpuWorkload("ResNet-12 5w1s", _params(resnet), 1 / rate, f"measured: {rate:g} tasks/s on one H200 (84x84)"),
        GpuWorkload("ResNet-12 5w5s", _params(resnet), ratio / rate,
                    f"derived: the 5w1s rate / {ratio:.2f}, its FLOPs per task over 5w1s's"),
    ]  # fmt: skip


def project(exchange_s: tuple[float, float], learner_memory_bandwidth: float, compiled_exchange_s=None,
            tasks: tuple[int, ...] | None = None, devices=DEVICES) -> dict:  # fmt: skip
    """Every workload x tasks per GPU x mode: step time and efficiency at each count of
    ``devices`` (the first is the baseline), the parts of the step at 64. ``tasks``: tasks per
    GPU (default: each workload's own); ``compiled_exchange_s``: also all-reduce mode with the
    learner's calls at a compiled graph's measured cost."""
    modes = [("allreduce", "allreduce", exchange_s), ("learner", "learner", exchange_s)]
    if compiled_exchange_s is not None:
        modes.insert(1, ("allreduce, compiled calls", "allreduce", compiled_exchange_s))
    rows = []
    for w in workloads():
        apply_s = APPLY_TOUCHES * w.params * costmodel.BYTES / HBM_BANDWIDTH
        for m in tasks or w.tasks_per_gpu:
            for label, mode, exchange in modes:
                costs = costmodel.Costs(w.name, w.params, w.task_s, apply_s, tuple(exchange),
                                        learner_memory_bandwidth=learner_memory_bandwidth)  # fmt: skip
                steps = {n: costmodel.step_s(costs, costmodel.gpu_link(n), n, m, mode) for n in devices}
                rows.append({"workload": w.name, "params": w.params, "task_s": w.task_s, "source": w.source,
                             "tasks_per_gpu": m, "mode": label, "step_s": [steps[n]["total"] for n in devices],
                             "parts_at_64": steps.get(64),
                             "efficiency": [steps[devices[0]]["total"] / steps[n]["total"] for n in devices]})  # fmt: skip
    links = {k: {"latency_s": v.latency_s, "bandwidth": v.bandwidth, "source": v.source} for k, v in costmodel.GPU_LINKS.items()}
    return {"devices": list(devices), "rows": rows, "links": links, "exchange_s": list(exchange_s),
            "compiled_exchange_s": list(compiled_exchange_s) if compiled_exchange_s is not None else None,
            "learner_memory_bandwidth": learner_memory_bandwidth}  # fmt: skip


def table(proj: dict, devices=TABLE_DEVICES) -> str:
    """The projection as a Markdown table: efficiency (and step ms) per GPU count."""
    head = "| workload | tasks per GPU | aggregation | " + " | ".join(f"{n} GPUs" for n in devices) + " |"
    lines = [head, "|" + "---|" * (3 + len(devices))]
    for r in proj["rows"]:
        at = [proj["devices"].index(n) for n in devices]
        cells = [f"{100 * r['efficiency'][i]:.1f}% ({1e3 * r['step_s'][i]:.0f} ms)" for i in at]
        lines.append(f"| {r['workload']} | {r['tasks_per_gpu']} | {r['mode']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_STYLES = {"allreduce": "-", "learner": "--"}


def plot(proj: dict, path: Path) -> Path:
    """Efficiency against GPUs, one panel per workload, a colour per tasks per GPU: all-reduce
    solid, with compiled calls dotted, learner dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["workload"] for r in proj["rows"]))
    fig, grid = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8), sharey=True, squeeze=False)
    axes = list(grid[0])
    for ax, name in zip(axes, names):
        rows = [r for r in proj["rows"] if r["workload"] == name]
        colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(r["tasks_per_gpu"] for r in rows))}
        for r in rows:
            ax.plot(proj["devices"], [100 * e for e in r["efficiency"]], _STYLES.get(r["mode"], ":"), marker="o",
                    markersize=3, color=colours[r["tasks_per_gpu"]], label=f"{r['mode']}, {r['tasks_per_gpu']} a GPU")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(proj["devices"], [str(n) for n in proj["devices"]], fontsize=7)
        ax.set_title(name)
        ax.set_xlabel("GPUs")
        ax.axhline(90, color="grey", linewidth=0.6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    axes[0].set_ylabel("weak-scaling efficiency, %")
    axes[0].set_ylim(0, 102)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["DEVICES", "H200_TASKS_PER_S", "TABLE_DEVICES", "GpuWorkload", "plot", "project", "table", "workloads"]
