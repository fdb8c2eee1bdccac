"""The MetaLearner on its own (in-process shards, no Ray, no MLflow): a non-finite step skipped,
what the shards are asked and when, and the pipelined call carried through a checkpoint."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from distmeta import config
from distmeta.learner.module import MetaLearner
from distmeta.models import flatten
from distmeta.recipe import Recipe
from tests.conftest import SINE_CONFIG

QUICK = ["cluster.num_shards=0", "algorithm.compile=false", "trainer.progress_bar=false", "trainer.val_every_n_steps=1000",
         "algorithm.meta_batch_size=6", "trainer.log_every_n_steps=2"]  # fmt: skip


class Recording:
    """The real in-process group; records every ask, and turns chosen steps' gradients to NaN."""

    def __init__(self, group, poison=()):
        self.group, self.poison, self.asked = group, set(poison), []
        self.num_shards, self.faults, self.traffic = group.num_shards, group.faults, group.traffic

    def submit(self, step, weights, version, plan, diagnostics=True):
        self.asked.append((step, version, weights.clone(), diagnostics))
        return self.group.submit(step, weights, version, plan, diagnostics)

    def collect(self, call):
        results = self.group.collect(call)
        if call.step not in self.poison:
            return results
        return [dataclasses.replace(r, family_grads={f: g * float("nan") for f, g in r.family_grads.items()}) for r in results]

    def workers_info(self):
        return self.group.workers_info()

    def close(self):
        self.group.close()


def _fit(tmp_path, overrides, poison=(), steps=4):
    recipe = Recipe.from_config(config.load(SINE_CONFIG, [*QUICK, f"trainer.max_steps={steps}", *overrides]))
    group = Recording(recipe.shard_group(), poison)
    learner = MetaLearner(recipe.model(), group, recipe.learner_settings, recipe.validation_families, {"test": True})
    snapshots = []

    class Snap:  # the weights after every step
        def on_train_batch_end(self, trainer, module, *args):
            snapshots.append(flatten({k: p.detach() for k, p in module.model.named_parameters()}).clone())

    import pytorch_lightning as pl

    snap = type("SnapCallback", (Snap, pl.Callback), {})()
    trainer = recipe.trainer(False, tmp_path, [snap])
    trainer.fit(learner)
    return learner, group, snapshots, trainer


def test_a_nonfinite_step_is_skipped_and_counted_under_skip(tmp_path):
    learner, _, snaps, trainer = _fit(tmp_path, ["trainer.on_nonfinite=skip"], poison={1})
    assert trainer.global_step == 4 and learner._skipped_steps == 1
    assert torch.equal(snaps[1], snaps[0])  # step 1 made no update
    assert not torch.equal(snaps[2], snaps[1]) and all(torch.isfinite(s).all() for s in snaps)


def test_a_nonfinite_step_stops_the_run_under_stop(tmp_path):
    from distmeta.errors import NonFiniteGradientError

    with pytest.raises(NonFiniteGradientError, match="step 2"):
        _fit(tmp_path, ["trainer.on_nonfinite=stop"], poison={2})


def test_shards_are_asked_at_the_current_weights_with_diagnostics_on_logged_steps_only(tmp_path):
    _, group, snaps, _ = _fit(tmp_path, [], steps=5)
    assert [(s, v) for s, v, _, _ in group.asked] == [(s, s) for s in range(5)]
    assert [d for *_, d in group.asked] == [False, True, False, True, True]  # windows of 2, and the last step
    for (_, _, weights, _), after in zip(group.asked[1:], snaps):
        assert torch.equal(weights, after)  # step s is asked at the weights step s-1 left


def test_pipelined_asks_the_next_step_at_the_weights_before_the_update_and_checkpoints_the_ask(tmp_path):
    learner, group, snaps, _ = _fit(tmp_path, ["trainer.staleness=1"], steps=4)
    asked = [(s, v) for s, v, _, _ in group.asked]
    assert asked == [(0, 0), (1, 0), (2, 1), (3, 2)]  # step s+1 at version s, submitted during step s
    for (_, _, weights, _), before in zip(group.asked[2:], snaps):
        assert torch.equal(weights, before)  # step s+1's weights: those before step s's update
    saved = {}
    learner.on_save_checkpoint(saved)
    assert saved["distmeta"] == {"test": True} and saved["distmeta_next"]["step"] == 4
    learner.on_load_checkpoint(saved)
    assert learner._next is None and learner._next_ask["version"] == 3
