"""Where an agent goes before and after adaptation: the paths of a few held-out tasks (the MAML
paper's figure of 2D navigation, Finn et al. 2017, figure 4), for environment families whose
observations are the agent's position in the plane."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from distmeta.algorithms import Algorithm
from distmeta.tasks import EVALUATION

TASKS = 4
EPISODES = 2
"""Held-out tasks drawn, and episodes of each collection drawn per task."""


def plot_paths(algo: Algorithm, model: nn.Module, family, *, seed: int, steps: Sequence[int], path: Path) -> Path | None:
    """One panel per task: the goal, and the first episodes after each of ``steps`` adaptation
    steps (each step adapting on its own fresh collection, as the evaluation does). None where
    the family's observations are not positions (nothing to draw)."""
    if not getattr(getattr(family, "tasks", None), "positions", False):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = family.sample(seed, EVALUATION, 0, range(TASKS))
    params = {k: p.detach() for k, p in model.named_parameters()}
    rollouts = list(algo.adaptation_rollouts(model, params, dict(model.named_buffers()), tasks, max(steps)))
    fig, axes = plt.subplots(1, TASKS, figsize=(3.2 * TASKS, 3.4), squeeze=False)
    colours = plt.get_cmap("viridis")
    for i, ax in enumerate(axes[0]):
        for n, j in enumerate(steps):
            for e in range(min(EPISODES, rollouts[j].obs.shape[1])):
                xy = rollouts[j].obs[i, e, :, :2].cpu()
                label = (f"after {j} step{'s' if j != 1 else ''}" if j else "before adaptation") if e == 0 else None
                ax.plot(xy[:, 0], xy[:, 1], color=colours(n / max(len(steps) - 1, 1)), lw=1, alpha=0.8, label=label)
        goal = tasks.params[i].cpu()
        ax.plot(goal[0], goal[1], marker="*", ms=14, color="crimson", ls="", label="goal")
        ax.plot(0, 0, marker="o", color="black", ls="")
        ax.set_aspect("equal")
        ax.set_title(f"held-out task {i}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{family.name}: paths before and after adaptation")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
