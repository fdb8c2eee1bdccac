"""The MetaLearner on its own (in-process shards, no Ray, no MLflow): a non-finite step skipped,
what the shards are asked and when, and the pipelined call carried through a checkpoint."""

from __future__ import annotations

import dataclasses
import signal

import pytest
import torch

from distmeta import config, interrupts
from distmeta.learner.module import MetaLearner
from distmeta.models import flatten
from distmeta.recipe import Recipe
from tests.conftest import REPO, SINE_CONFIG

QUICK = ["cluster.num_shards=0", "algorithm.compile=false", "trainer.progress_bar=false", "trainer.val_every_n_steps=1000",
         "algorithm.meta_batch_size=6", "trainer.log_every_n_steps=2"]  # fmt: skip


class Recording:
    """The real in-process group; records every ask, and turns chosen steps' gradients to NaN."""

    def __init__(self, group, poison=(), stop=None):
        self.group, self.poison, self.stop, self.asked, self.epochs = group, set(poison), stop, [], []
        self.num_shards, self.faults, self.traffic = group.num_shards, group.faults, group.traffic

    def submit(self, step, weights, version, plan, diagnostics=True, **later):
        """``poison``: steps, or (step, epoch) pairs; ``stop``: the (step, epoch) during which a stop is asked."""
        self.asked.append((step, version, weights.clone(), diagnostics))
        self.epochs.append((later.get("epoch", 0), later.get("origin")))
        return self.group.submit(step, weights, version, plan, diagnostics, **later)

    def collect(self, call):
        results = self.group.collect(call)
        at = (call.step, self.epochs[-1][0])
        if at == self.stop:
            raise interrupts.Interrupted(signal.SIGTERM)
        if call.step not in self.poison and at not in self.poison:
            return results
        return [dataclasses.replace(r, family_grads={f: g * float("nan") for f, g in r.family_grads.items()}) for r in results]

    def workers_info(self):
        return self.group.workers_info()

    def close(self):
        self.group.close()


def _fit(tmp_path, overrides, poison=(), steps=4, path=SINE_CONFIG, stop=None):
    recipe = Recipe.from_config(config.load(path, [*QUICK, f"trainer.max_steps={steps}", *overrides]))
    group = Recording(recipe.shard_group(), poison, stop)
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


PROMP = ["algorithm.name=promp_rl", "algorithm.rl.epochs=3", "algorithm.meta_batch_size=4", "tasks.shots=4", "tasks.query=4",
         "model.hidden=[16,16]", "trainer.val_tasks=2", "cluster.num_shards=0"]  # fmt: skip


def _promp(tmp_path, **kw):
    return _fit(tmp_path, [*PROMP, *kw.pop("overrides", [])], steps=3, path=REPO / "configs/navigation2d_maml.yaml", **kw)


def test_promp_asks_each_epoch_at_the_weights_the_one_before_reached_and_counts_one_step(tmp_path):
    learner, group, snaps, trainer = _promp(tmp_path)
    assert trainer.global_step == 3 and len(snaps) == 3
    assert [e for e, _ in group.epochs] == [0, 1, 2] * 3 and [s for s, *_ in group.asked] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for step in range(3):
        first, *later = range(3 * step, 3 * step + 3)
        assert group.epochs[first][1] is None  # epoch 0 collects at the weights it is sent
        for i in later:  # the later epochs: new weights, and where the step's data was collected
            assert torch.equal(group.epochs[i][1], group.asked[first][2])
            assert not torch.equal(group.asked[i][2], group.asked[i - 1][2])
    assert torch.equal(group.asked[3][2], snaps[0])  # the next step starts where the last epoch left the weights
    logged = [d for *_, d in group.asked]  # on the last epoch of logged steps only (windows of 2, and the last step)
    assert logged == [False] * 5 + [True] + [False] * 2 + [True]


def test_a_promp_step_skipped_or_stopped_mid_epochs_leaves_none_of_its_epochs_applied(tmp_path):
    learner, group, snaps, trainer = _promp(tmp_path, overrides=["trainer.on_nonfinite=skip"], poison={(1, 2)})
    assert trainer.global_step == 3 and learner._skipped_steps == 1
    assert torch.equal(snaps[1], snaps[0]) and not torch.equal(snaps[2], snaps[1])

    learner, group, snaps, trainer = _promp(tmp_path / "stopped", stop=(1, 1))
    assert trainer.global_step == 1  # step 1 abandoned
    weights = flatten({k: p.detach() for k, p in learner.model.named_parameters()})
    assert torch.equal(weights, snaps[0])  # epoch 0's update of step 1 was undone
    assert not torch.equal(weights, group.asked[4][2])
