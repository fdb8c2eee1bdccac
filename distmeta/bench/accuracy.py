"""``distmeta bench --time-to-accuracy``: training wall time until a validation score is reached.

Throughput alone can mislead (a pipelined learner applies one-update-old gradients, which may
need more steps), so this races the modes to the same held-out score instead:

- ``loop``: the per-task baseline (:class:`~distmeta.bench.modes.LoopBaseline`);
- ``sync``: ``distmeta train`` of the config as it is;
- ``pipelined``: the same with ``trainer.staleness=1``.

Each mode trains alone on the machine, one after another, from the same initial weights and task
stream. Every ``eval_every`` meta-steps it scores the same held-out tasks the learner validates
on (``meta/val_mse`` or ``meta/val_acc`` after the training number of inner steps); the clock stops while
it does, so the time reported is training time only. A mode stops at the target, or when its
training time passes ``max_seconds`` (then it did not reach it).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch

from distmeta import config
from distmeta.bench.modes import DistmetaRun, LoopBaseline
from distmeta.recipe import Recipe

MODES = ("loop", "sync", "pipelined")


class Race:
    """The stopwatch and the finish line of one mode: training time excludes evaluations."""

    def __init__(self, target: float, lower_is_better: bool, max_seconds: float):
        self.target, self.lower, self.max_seconds = target, lower_is_better, max_seconds
        self.evals: list[tuple[int, float, float]] = []  # (meta-step, training seconds, score)
        self._started = self._paused_at = 0.0
        self._paused_s = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def pause(self) -> None:
        self._paused_at = time.perf_counter()

    def record(self, step: int, score: float) -> bool:
        """Resume the clock after an evaluation of ``score`` at ``step``; True when the race is over."""
        now = time.perf_counter()
        self._paused_s += now - self._paused_at
        elapsed = now - self._started - self._paused_s
        self.evals.append((step, elapsed, score))
        return self.reached or elapsed > self.max_seconds

    @property
    def reached(self) -> bool:
        if not self.evals:
            return False
        score = self.evals[-1][2]
        return score <= self.target if self.lower else score >= self.target

    def summary(self) -> dict:
        step, seconds, score = self.evals[-1] if self.evals else (0, 0.0, float("nan"))
        return {
            "reached": self.reached,
            "steps": step,
            "train_seconds": seconds,
            "score": score,
            "evals": [list(e) for e in self.evals],
        }


class _RaceCallback(pl.Callback):
    def __init__(self, race: Race, monitor: str):
        self.race, self.monitor = race, monitor

    def on_train_start(self, trainer, pl_module):
        self.race.start()

    def on_validation_start(self, trainer, pl_module):
        self.race.pause()

    def on_validation_end(self, trainer, pl_module):
        if self.race.record(trainer.global_step, float(trainer.callback_metrics[self.monitor])):
            trainer.should_stop = True


def run(
    config_path: str,
    overrides: list[str] = (),
    target: float = 0.40,
    eval_every: int = 500,
    max_seconds: float = 1200.0,
    modes: tuple[str, ...] = MODES,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; known: {', '.join(MODES)}")
    base = [*overrides, f"trainer.val_every_n_steps={eval_every}", "trainer.progress_bar=false"]
    recipe = Recipe.from_config(config.load(config_path, base))
    monitor, direction = recipe.learner_settings.val_monitor
    out = {
        "config": config_path,
        "overrides": list(overrides),
        "target": target,
        "monitor": monitor,
        "eval_every": eval_every,
        "max_seconds": max_seconds,
        "num_shards": recipe.run.num_shards,
        "torch": torch.__version__,
        "modes": {},
    }
    with tempfile.TemporaryDirectory(prefix="distmeta-tta-") as scratch:  # the runs' checkpoints and metrics
        for mode in modes:
            race = Race(target, direction == "min", max_seconds)
            if mode == "loop":
                _race_loop(recipe, race, eval_every)
            else:
                extra = ["trainer.staleness=1"] if mode == "pipelined" else []
                mode_recipe = Recipe.from_config(config.load(config_path, [*base, *extra]))
                _race_distmeta(mode, mode_recipe, race, monitor, Path(scratch))
            out["modes"][mode] = s = race.summary()
            log(
                f"{mode}: {'reached' if s['reached'] else 'did not reach'} {monitor} {target} "
                f"({s['score']:.3f}) at step {s['steps']} after {s['train_seconds']:.1f} s of training"
            )
    loop = out["modes"].get("loop")
    if loop and loop["reached"]:
        for s in out["modes"].values():
            s["speedup_vs_loop"] = loop["train_seconds"] / s["train_seconds"] if s["reached"] else None
    return out


def _race_loop(recipe: Recipe, race: Race, eval_every: int) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(recipe.run.cpus_per_shard)))  # one process, as a user of the loop runs it
    try:
        loop = LoopBaseline(recipe)
        race.start()
        while loop.step < recipe.learner_settings.max_steps:
            loop.train_step()
            if loop.step % eval_every == 0:
                race.pause()
                if race.record(loop.step, loop.validation_score()):
                    return
    finally:
        torch.set_num_threads(threads)


def _race_distmeta(mode: str, recipe: Recipe, race: Race, monitor: str, workdir: Path) -> None:
    with recipe.runtime():
        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        run_ = DistmetaRun(mode, recipe, uri, workdir, [_RaceCallback(race, monitor)], validate=True)
        try:
            run_.fit()
        finally:
            run_.close()


def table(report: dict) -> str:
    lines = [
        f"distmeta bench --time-to-accuracy {report['config']}: training time until {report['monitor']} "
        f"reaches {report['target']} (held-out tasks scored every {report['eval_every']} steps, not timed)",
        f"{'mode':<12}{'reached':>9}{'steps':>9}{'train s':>10}{'score':>9}{'x loop':>9}",
    ]
    for name, m in report["modes"].items():
        speed = m.get("speedup_vs_loop")
        lines.append(
            f"{name:<12}{'yes' if m['reached'] else 'no':>9}{m['steps']:>9,}{m['train_seconds']:>10.1f}"
            f"{m['score']:>9.3f}{(f'{speed:.2f}' if speed else '-'):>9}"
        )
    return "\n".join(lines)
