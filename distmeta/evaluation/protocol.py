"""The sine meta-test protocol (Finn et al. 2017, section 5.1, Figure 2).

For each support size K, adapt to ``num_tasks`` held-out tasks (fixed evaluation seed, its own
stream) with plain SGD on K points at the training inner LR, and report the query MSE after each
number of steps as a mean with a 95% confidence interval (1.96 standard errors).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from distmeta.evaluation.adaptation import adaptation_curve
from distmeta.tasks import EVALUATION, SineFamily
from distmeta.tracking.names import eval_key


@dataclass
class EvalReport:
    """``values``: ``{"mse.k10.steps1.mean": ..., "mse.k10.steps1.ci95": ...}``;
    ``curves``: per K, the [steps + 1] mean MSE after 0..max steps (for the figure)."""

    values: dict[str, float]
    curves: dict[int, list[float]] = field(default_factory=dict)
    ci95: dict[int, list[float]] = field(default_factory=dict)
    num_tasks: int = 0

    def table(self, shots: Sequence[int], steps: Sequence[int]) -> str:
        """Plain-text table: one row per K, one column per step count, ``mean ± ci95``."""
        head = "K \\ steps".ljust(10) + "".join(f"{s:>18}" for s in steps)
        rows = [head]
        for k in shots:
            cells = "".join(
                f"{self.values[eval_key(k, s, 'mean')]:>10.4f} ± {self.values[eval_key(k, s, 'ci95')]:<5.3f}" for s in steps
            )
            rows.append(f"K={k}".ljust(10) + cells)
        return "\n".join(rows)


def evaluate_sine(
    model: nn.Module,
    family: SineFamily,
    *,
    seed: int,
    num_tasks: int,
    shots: Sequence[int],
    steps: Sequence[int],
    query: int,
    inner_lr: float,
    chunk: int = 200,
) -> EvalReport:
    """Run the protocol; tasks are processed in chunks to bound memory."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    horizon = max(steps)
    values: dict[str, float] = {}
    report = EvalReport(values, num_tasks=num_tasks)
    for k in shots:
        parts = []
        for start in range(0, num_tasks, chunk):
            idx = range(start, min(start + chunk, num_tasks))
            tasks = family.sample(seed, EVALUATION, 0, idx, shots=k, query=query)
            parts.append(adaptation_curve(model, params, tasks, inner_lr, horizon).detach())
        curve = torch.cat(parts).double()  # [num_tasks, horizon + 1]
        mean = curve.mean(0)
        ci = 1.96 * curve.std(0, unbiased=True) / math.sqrt(num_tasks) if num_tasks > 1 else torch.zeros_like(mean)
        report.curves[k] = mean.tolist()
        report.ci95[k] = ci.tolist()
        for s in steps:
            values[eval_key(k, s, "mean")] = mean[s].item()
            values[eval_key(k, s, "ci95")] = ci[s].item()
    return report


def plot_curves(report: EvalReport, path: Path, title: str = "") -> Path:
    """The MAML paper's adaptation figure: query MSE vs. gradient steps, one line per K, 95% CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, mean in sorted(report.curves.items()):
        xs = list(range(len(mean)))
        ci = report.ci95[k]
        ax.plot(xs, mean, marker="o", ms=3, label=f"K={k}")
        ax.fill_between(xs, [m - c for m, c in zip(mean, ci)], [m + c for m, c in zip(mean, ci)], alpha=0.2)
    ax.set_xlabel("number of gradient steps")
    ax.set_ylabel("mean squared error (query)")
    ax.set_title(title or f"sine adaptation, {report.num_tasks} held-out tasks")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
