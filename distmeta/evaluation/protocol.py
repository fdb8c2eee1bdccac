"""The meta-test protocol, for regression and classification alike.

For each support size K, adapt to ``num_tasks`` held-out tasks (fixed evaluation seed, its own
stream; for image families the test split's classes) with the algorithm's own adaptation at the
training inner LR, and report the query score after each number of steps as a mean with a 95%
confidence interval (1.96 standard errors). Sine reports MSE (Finn et al. 2017, section 5.1,
Figure 2); classification reports accuracy over 600 episodes (the few-shot papers' protocol).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from distmeta.algorithms import Algorithm
from distmeta.evaluation.adaptation import sampled_curve
from distmeta.evaluation.keys import STATS, curve_key, eval_key
from distmeta.tasks import EVALUATION, TaskFamily


@dataclass
class EvalReport:
    """``values``: ``{"acc.k1.steps10.mean": ..., "acc.k1.steps10.ci95": ...}`` (``mse.`` for
    regression; ``<family>/mse.k10...`` for each family of a mixture); ``curves``/``ci95``: per
    row (``K=10``, or ``linear K=10``), the mean score and its CI at each of ``steps``."""

    score: str
    values: dict[str, float]
    curves: dict[str, list[float]] = field(default_factory=dict)
    ci95: dict[str, list[float]] = field(default_factory=dict)
    num_tasks: int = 0
    shots: tuple[int, ...] = ()
    steps: tuple[int, ...] = ()
    families: tuple[str, ...] = ()
    """Empty for a single family; a mixture's family labels (the prefixes of ``values``)."""
    family_shots: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """A mixture's K values per family (families may have their own ``shots``)."""

    def rows(self) -> list[tuple[str, str, int]]:
        """``(row label, value-key prefix, K)`` for each row of the table."""
        if not self.families:
            return [(f"K={k}", "", k) for k in self.shots]
        return [(f"{f} K={k}", f"{f}/", k) for f in self.families for k in self.family_shots.get(f, self.shots)]

    def table(self) -> str:
        """Plain-text table: one row per (family,) K, one column per step count, ``mean ± ci95``."""
        what = SCORES[self.score][0]
        width = max(10, *(len(label) + 2 for label, _, _ in self.rows()))
        head = "K \\ steps".ljust(width) + "".join(f"{s:>18}" for s in self.steps)
        lines = [f"{what} over {self.num_tasks} held-out tasks{' per family' if self.families else ''}, mean ± 95% CI", head]
        for label, prefix, k in self.rows():
            cells = "".join(
                f"{self.values[prefix + eval_key(self.score, k, s, 'mean')]:>10.4f} ± "
                f"{self.values[prefix + eval_key(self.score, k, s, 'ci95')]:<5.3f}"
                for s in self.steps
            )
            lines.append(label.ljust(width) + cells)
        return "\n".join(lines)

    def series(self) -> list[tuple[str, int, float]]:
        """The curves as ``(key, inner steps, value)``: per row a ``mse.k10.mean`` and a
        ``.ci95`` series (``linear/mse.k10.mean`` for a mixture) whose step is the number of inner
        steps, so MLflow draws the adaptation curve and compares it across runs."""
        return [
            (prefix + curve_key(self.score, k, stat), s, self.values[prefix + eval_key(self.score, k, s, stat)])
            for _, prefix, k in self.rows()
            for stat in STATS
            for s in self.steps
        ]

    def columns(self) -> dict[str, list]:
        """The table as columns (a mixture's family, K, inner steps, mean, 95% CI), one row per
        point of a curve."""
        cols: dict[str, list] = {"family": [], "shots": [], "steps": [], "mean": [], "ci95": []}
        for _, prefix, k in self.rows():
            for s in self.steps:
                cols["family"].append(prefix.rstrip("/"))
                cols["shots"].append(k)
                cols["steps"].append(s)
                for stat in STATS:
                    cols[stat].append(self.values[prefix + eval_key(self.score, k, s, stat)])
        if not self.families:
            del cols["family"]
        return cols


def combine(reports: dict[str, EvalReport]) -> EvalReport:
    """One report for a mixture: each family's values under ``<family>/``, its rows labelled by it."""
    first = next(iter(reports.values()))
    out = EvalReport(
        first.score,
        {},
        num_tasks=first.num_tasks,
        shots=first.shots,
        steps=first.steps,
        families=tuple(reports),
        family_shots={name: r.shots for name, r in reports.items()},
    )
    for name, r in reports.items():
        out.values.update({f"{name}/{k}": v for k, v in r.values.items()})
        out.curves.update({f"{name} {label}": v for label, v in r.curves.items()})
        out.ci95.update({f"{name} {label}": v for label, v in r.ci95.items()})
    return out


def evaluate(
    algo: Algorithm,
    model: nn.Module,
    family: TaskFamily,
    *,
    seed: int,
    num_tasks: int,
    shots: Sequence[int],
    steps: Sequence[int],
    query: int,
) -> EvalReport:
    """Run the protocol on ``family`` (with its evaluation data attached)."""
    report = EvalReport(algo.score_name, {}, num_tasks=num_tasks, shots=tuple(shots), steps=tuple(steps))
    for k in shots:
        curve = sampled_curve(
            algo, model, family, seed=seed, stream=EVALUATION, num_tasks=num_tasks, steps=steps, shots=k, query=query
        ).double()  # [num_tasks, len(steps)]
        mean = curve.mean(0)
        ci = 1.96 * curve.std(0, unbiased=True) / math.sqrt(num_tasks) if num_tasks > 1 else torch.zeros_like(mean)
        report.curves[f"K={k}"] = mean.tolist()
        report.ci95[f"K={k}"] = ci.tolist()
        for i, s in enumerate(steps):
            report.values[eval_key(report.score, k, s, "mean")] = mean[i].item()
            report.values[eval_key(report.score, k, s, "ci95")] = ci[i].item()
    return report


SCORES = {
    "mse": ("query MSE", "mean squared error (query)"),
    "acc": ("query accuracy", "accuracy (query)"),
    "return": ("average return (K: environments per adaptation step)", "average undiscounted return"),
}
"""Per score, its name in the table and on the figure's axis."""


def plot_curves(report: EvalReport, path: Path, title: str = "") -> Path:
    """The MAML paper's adaptation figure: query score vs. gradient steps, one line per K, 95% CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, mean in report.curves.items():
        xs = list(report.steps)
        ci = report.ci95[label]
        ax.plot(xs, mean, marker="o", ms=3, label=label)
        ax.fill_between(xs, [m - c for m, c in zip(mean, ci)], [m + c for m, c in zip(mean, ci)], alpha=0.2)
    ax.set_xlabel("number of gradient steps")
    ax.set_ylabel(SCORES[report.score][1])
    if report.score == "mse":
        ax.set_yscale("log")
    ax.set_title(title or f"adaptation, {report.num_tasks} held-out tasks")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
