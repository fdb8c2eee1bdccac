"""A validation pass: each validation family's held-out tasks adapted at the learner's current
weights, scored after each of the configured inner-step counts."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn

from distmeta.evaluation.adaptation import sampled_curve
from distmeta.learner.settings import LearnerSettings
from distmeta.models import family_view
from distmeta.tasks import VALIDATION, TaskFamily
from distmeta.tracking import names

log = logging.getLogger(__name__)


def validation_scores(settings: LearnerSettings, model: nn.Module, families: Sequence[TaskFamily], step: int,
                      strict: bool = True) -> dict[str, float]:  # fmt: skip
    """The logged validation metrics at meta-step ``step``: the mean over ``families`` of the
    score after each inner-step count (after the training count: the monitored value), and each
    family's own score (for a mixture). A non-finite monitored score raises (not ``strict``, as
    for the untrained weights at step 0: a warning); a diverging probe past the training inner
    steps is a warning."""
    s = settings
    score = s.algorithm.score_name
    monitor, _ = s.val_monitor
    means = []
    logged: dict[str, float] = {}
    for family in families:  # each family's own held-out tasks; the score is their mean
        curve = sampled_curve(
            s.algorithm,
            family_view(model, family.name),
            family,
            seed=s.seed,
            stream=VALIDATION,
            num_tasks=s.val_tasks,
            steps=s.val_steps,
        )
        means.append(curve.mean(dim=0))
        if len(families) > 1:
            at = s.val_steps.index(s.train_inner_steps)
            logged[names.family_metric(family.name, f"val_{score}")] = means[-1][at].item()
    mean = torch.stack(means).mean(dim=0)
    for i, k in enumerate(s.val_steps):  # the training number of steps is the monitored score's, logged once
        logged[monitor if k == s.train_inner_steps else names.val_score_after(score, k)] = mean[i].item()
    if strict and not math.isfinite(logged[monitor]):
        raise FloatingPointError(f"non-finite validation {score} at step {step}: {logged}")
    diverged = sorted(k for k, v in logged.items() if not math.isfinite(v))
    if diverged:  # reported, not fatal: probes past the training inner steps may diverge
        log.warning("validation at step %d: %s not finite (adaptation diverged)", step, ", ".join(diverged))
    return logged
