"""A run's records beside its params: git state of the config's checkout, the families as MLflow
datasets, the description; the params that apply to the run; its default name."""

from __future__ import annotations

import json
import os
import subprocess

from mlflow.tracking import MlflowClient

from distmeta.config import load
from distmeta.recipe import Recipe
from distmeta.tracking.records import DIRTY_TAG, GIT_ENV, NOTE_TAG, RunRecords, git_tags, log_records
from tests.conftest import SINE_CONFIG
from tests.trees import miniimagenet_tree


def _git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_git_tags_name_the_config_checkouts_commit_and_whether_it_has_changes(tmp_path):
    repo = tmp_path / "project"
    (repo / "configs").mkdir(parents=True)
    config = repo / "configs" / "run.yaml"
    config.write_text("# Sine for a test.\n#\n# Two lines.\nseed: 3\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "0")
    _git(repo, "add", "configs/run.yaml")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "1")
    tags = git_tags(repo / "configs")
    assert tags["mlflow.source.git.commit"] == _git(repo, "rev-parse", "HEAD") and tags[DIRTY_TAG] == "false"
    assert tags["mlflow.source.git.branch"] == "main" and "mlflow.source.git.repoURL" not in tags  # no remote
    (repo / "untracked.txt").write_text("x")
    assert git_tags(repo)[DIRTY_TAG] == "false"  # untracked files are not changes of the checkout
    config.write_text(config.read_text() + "trainer:\n  max_steps: 5\n")
    assert git_tags(repo)[DIRTY_TAG] == "true"
    assert git_tags(tmp_path) == {}  # in no checkout: nothing recorded
    _git(repo, "remote", "add", "origin", "https://someone:s3cret@git.example/project.git")
    assert git_tags(repo)["mlflow.source.git.repoURL"] == "https://git.example/project.git"  # no credentials
    _git(repo, "checkout", "-q", "--detach")
    assert "mlflow.source.git.branch" not in git_tags(repo)  # a detached head is on no branch

    recipe = Recipe(load(config))
    records = recipe.records()
    assert records.checkout == config.parent and records.description == "Sine for a test.\n\nTwo lines."
    assert recipe.run.run_name == "run-maml"  # the file's name, and the algorithm it does not name
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    log_records(client, run_id, records)
    run = client.get_run(run_id)
    assert run.data.tags[NOTE_TAG] == records.description and run.data.tags[DIRTY_TAG] == "true"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "sine" and dataset.dataset.source_type == "code"
    assert json.loads(dataset.dataset.profile)["ranges"] == [["amplitude", [0.1, 5.0]], ["phase", [0.0, 3.141592653589793]]]
    assert [(t.key, t.value) for t in dataset.tags] == [("mlflow.data.context", "training")]


def test_a_submitted_run_takes_the_git_tags_its_submitter_sent(tmp_path, monkeypatch):
    """A job's working directory is a copy without .git: ``distmeta submit`` sends the tags."""
    sent = {"mlflow.source.git.commit": "0" * 40, DIRTY_TAG: "false"}
    monkeypatch.setenv(GIT_ENV, json.dumps(sent))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    log_records(client, run_id, RunRecords("", tmp_path))  # tmp_path: in no checkout
    tags = client.get_run(run_id).data.tags
    assert {k: tags[k] for k in sent} == sent


def test_a_dataset_on_disk_is_its_folder_and_a_digest_of_its_files(tmp_path, monkeypatch):
    root = miniimagenet_tree(tmp_path / "mini")
    overrides = ["tasks.family=miniimagenet", f"tasks.root={root}", "model.name=conv4", "tasks.shots=1"]
    (first,) = Recipe(load(None, overrides)).records().datasets
    assert first.source == str(root) and first.name == "miniimagenet" and first.spec["ways"] == 5 and "x_range" not in first.spec
    assert Recipe(load(None, overrides)).records().datasets[0].digest == first.digest  # the same files: the same digest
    image = next((root / "images").iterdir())
    os.utime(image, ns=(1, 1))
    assert Recipe(load(None, overrides)).records().datasets[0].digest != first.digest
    monkeypatch.chdir(tmp_path)  # a root relative to the working directory: the same folder and files
    relative = [o.replace(f"tasks.root={root}", "tasks.root=mini") for o in overrides]
    (same,) = Recipe(load(None, relative)).records().datasets
    assert same.source == str(root) and same.digest == Recipe(load(None, overrides)).records().datasets[0].digest


def test_params_are_the_keys_that_apply_to_the_run():
    sine = Recipe(load(SINE_CONFIG)).params()
    assert {"algorithm.inner_lr", "tasks.amplitude", "model.hidden", "tasks.family"} <= set(sine)
    dropped = ("tasks.ways", "algorithm.reptile.inner_batch", "model.filters", "tasks.families", "cluster.collective",
               "algorithm.min_lr_ratio", "trainer.delay_compensation", "tasks.root", "model.norm")  # fmt: skip
    assert not set(dropped) & set(sine)
    protonet = Recipe(load(None, ["tasks.family=glyphs", "model.name=conv4", "algorithm.name=protonet"])).params()
    assert "algorithm.inner_lr" not in protonet and "tasks.amplitude" not in protonet and "tasks.x_range" not in protonet
    assert {"tasks.ways", "model.filters", "model.norm", "tasks.rotations"} <= set(protonet) and "tasks.root" not in protonet
    reptile = Recipe(load(None, ["algorithm.name=reptile", "cluster.aggregation=allreduce", "algorithm.lr_schedule=cosine"]))
    assert {"algorithm.reptile.inner_batch", "cluster.collective", "algorithm.min_lr_ratio"} <= set(reptile.params())
    mixture = ["tasks.families=[{name: sine}, {name: linear}]"]
    assert (
        "tasks.family" not in Recipe(load(None, mixture)).params() and Recipe(load(None, mixture)).run.run_name == "mixture-maml"
    )
    assert Recipe(load(SINE_CONFIG, ["tracking.run_name=mine"])).run.run_name == "mine"
