"""Small runs of the real training path for integration tests."""

from __future__ import annotations

import torch

import distmeta
from tests.conftest import SINE_CONFIG

SMALL = [
    "trainer.val_every_n_steps=10",
    "trainer.val_tasks=20",
    "trainer.log_every_n_steps=5",
    "trainer.progress_bar=false",
    "evaluation.num_tasks=20",
    "evaluation.query=20",
    "algorithm.compile=false",  # compiled path: tests/shard and tests/test_end_to_end.py
]


def small_run(*overrides: str, resume: str | None = None) -> distmeta.TrainResult:
    cfg = distmeta.load_config(SINE_CONFIG, [*SMALL, *overrides])
    return distmeta.train(cfg, resume=resume)


def params_of(result: distmeta.TrainResult) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in result.model.parameters()])


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()
