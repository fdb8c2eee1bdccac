"""The image families end to end through the real training path: Omniglot and mini-ImageNet
from trees in their on-disk layouts (train a few steps on Ray shard actors, then evaluate the
checkpoint), and the procedural glyphs."""

import json

import pytest
from mlflow.tracking import MlflowClient

import distmeta
from distmeta.cli import main
from distmeta.tracking import names
from tests.integration.helpers import SMALL
from tests.shard.helpers import compute
from tests.trees import cifar100_tree, cub_tree, miniimagenet_tree, omniglot_tree, tiered_tree

pytestmark = [pytest.mark.ray]

TINY = [
    *SMALL,
    "trainer.max_steps=4",
    "trainer.val_every_n_steps=2",
    "trainer.val_tasks=4",
    "trainer.log_every_n_steps=2",
    "evaluation.num_tasks=10",
    "evaluation.query=3",
    "model.name=conv4",
    "model.filters=8",
    "tasks.shots=1",
    "tasks.query=2",
    "algorithm.meta_batch_size=4",
]


def _check_run(result, ways: int):
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(result.run_id, names.val_score("acc"))] == [0, 2, 4]
    for key in ("query_acc", "preadapt_acc", "loss"):
        assert client.get_metric_history(result.run_id, names.meta_metric(key)), key
    acc = result.evaluation.values["acc.k1.steps1.mean"]
    assert 0.0 <= acc <= 1.0 and {m.step: m.value for m in client.get_metric_history(result.run_id, "test/acc.k1.mean")}[
        1
    ] == pytest.approx(acc)
    assert getattr(result.model, "net", result.model).head.out_features == ways  # MetaSGD wraps the network


def test_omniglot_tree_trains_on_class_partitioned_shards_and_evaluates(workdir, ray_runtime, capsys):
    root = omniglot_tree(workdir / "omniglot")
    cfg = distmeta.load_config(
        None,
        [
            *TINY,
            "tasks.family=omniglot",
            f"tasks.root={root}",
            "tasks.class_split=[10,3,5]",
            "tasks.ways=3",
            "tasks.shard_by=classes",
            "cluster.num_shards=2",
            "algorithm.inner_lr=0.4",
            "evaluation.steps=[0,1,3]",
        ],
    )
    result = distmeta.train(cfg)
    _check_run(result, ways=3)
    assert main(["eval", "--checkpoint", str(result.last_checkpoint), "--json", "evaluation.num_tasks=12"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["num_tasks"] == 12 and 0.0 <= report["acc.k1.steps3.mean"] <= 1.0


def test_miniimagenet_tree_trains_and_evaluates(workdir, ray_runtime):
    root = miniimagenet_tree(workdir / "mini")
    cfg = distmeta.load_config(
        None,
        [
            *TINY,
            "tasks.family=miniimagenet",
            f"tasks.root={root}",
            "tasks.ways=3",
            "cluster.num_shards=2",
            "algorithm.name=metasgd",
            "algorithm.inner_steps=2",
            "algorithm.checkpoint_inner=true",
            "algorithm.chunk_size=1",
            "evaluation.steps=[0,1,2]",
        ],
    )
    result = distmeta.train(cfg)
    _check_run(result, ways=3)
    report, _ = distmeta.evaluate(result.last_checkpoint, ["evaluation.num_tasks=6"])
    assert report.num_tasks == 6 and set(report.steps) == {0, 1, 2}


def test_glyph_protonet_runs_in_process(workdir):
    cfg = distmeta.load_config(None, [*TINY, "tasks.family=glyphs", "algorithm.name=protonet", "cluster.num_shards=0"])
    result = distmeta.train(cfg)
    assert set(result.evaluation.values) == {"acc.k1.steps0.mean", "acc.k1.steps0.ci95"}
    assert result.evaluation.values["acc.k1.steps0.mean"] > 0.2  # chance is 1/5


def _mixture(root):
    return [
        *TINY,
        "tasks.families=[{name: glyphs}, {name: omniglot}]",
        f"tasks.root={root}",
        "tasks.class_split=[10,3,5]",
        "tasks.ways=3",
        "tasks.shard_by=family",
        "cluster.num_shards=2",
        "evaluation.steps=[0,1]",
    ]


def test_under_shard_by_family_only_the_owning_actor_holds_a_familys_images(workdir, ray_runtime):
    from distmeta.models import flatten
    from distmeta.recipe import Recipe

    recipe = Recipe.from_config(distmeta.load_config(None, _mixture(omniglot_tree(workdir / "omniglot"))))
    group = recipe.shard_group()
    try:
        held = [ray_runtime.get(a.families_with_images.remote()) for a in group.actors]
        assert held == [["glyphs"], ["omniglot"]]
        planner = recipe.learner_settings.planner
        weights = flatten({k: p.detach() for k, p in recipe.model().named_parameters()})
        for step in range(3):
            for r in compute(group, step, weights, step, planner.plan(step)):
                assert list(r.family_counts) == held[r.shard]
    finally:
        group.close()


def test_glyphs_and_omniglot_train_jointly_and_evaluate_per_family(workdir, ray_runtime):
    cfg = distmeta.load_config(None, _mixture(omniglot_tree(workdir / "omniglot")))
    result = distmeta.train(cfg)
    client = MlflowClient(result.tracking_uri)
    for family in ("glyphs", "omniglot"):
        assert 0.0 <= result.evaluation.values[f"{family}/acc.k1.steps1.mean"] <= 1.0
        assert client.get_metric_history(result.run_id, names.family_metric(family, "query_acc"))
        assert client.get_metric_history(result.run_id, names.family_metric(family, "val_acc"))
    assert "glyphs K=1" in result.evaluation.table() and "omniglot K=1" in result.evaluation.table()


def test_per_family_heads_with_their_own_ways_and_shots_train_and_evaluate(workdir, ray_runtime, capsys):
    """glyphs 5-way 1-shot and Omniglot 3-way 2-shot on one body with a head each; each family is
    validated and evaluated with its own head and protocol, and the checkpoint evaluates again."""
    root = omniglot_tree(workdir / "omniglot")
    cfg = distmeta.load_config(
        None,
        [
            *TINY,
            "tasks.families=[{name: glyphs, ways: 5}, {name: omniglot, ways: 3, shots: 2}]",
            f"tasks.root={root}",
            "tasks.class_split=[10,3,5]",
            "model.heads=per_family",
            "tasks.shard_by=family",
            "cluster.num_shards=2",
            "evaluation.steps=[0,1]",
        ],
    )
    result = distmeta.train(cfg)
    assert {k: h.out_features for k, h in result.model.heads.items()} == {"glyphs": 5, "omniglot": 3}
    table = result.evaluation.table()
    assert "glyphs K=1" in table and "omniglot K=2" in table and "omniglot K=1" not in table
    for key in ("glyphs/acc.k1.steps1.mean", "omniglot/acc.k2.steps1.mean"):
        assert 0.0 <= result.evaluation.values[key] <= 1.0
    client = MlflowClient(result.tracking_uri)
    for family in ("glyphs", "omniglot"):
        assert client.get_metric_history(result.run_id, names.family_metric(family, "val_acc"))
    assert main(["eval", "--checkpoint", str(result.last_checkpoint), "--json", "evaluation.num_tasks=6"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= report["omniglot/acc.k2.steps1.mean"] <= 1.0


def test_the_photo_datasets_train_jointly_on_class_partitioned_shards_from_their_caches(workdir, ray_runtime, capsys):
    cifar = cifar100_tree(workdir / "cifar")
    roots = {
        "cifar_fs": cifar,
        "fc100": cifar,
        "tieredimagenet": tiered_tree(workdir / "tiered"),
        "cub": cub_tree(workdir / "cub"),
    }
    families = ", ".join(f"{{name: {name}, root: '{root}'}}" for name, root in roots.items())
    overrides = [
        *TINY,
        f"tasks.families=[{families}]",
        "tasks.image_size=32",
        "tasks.ways=2",
        "tasks.shard_by=classes",
        "tasks.class_partitions=2",
        "cluster.num_shards=2",
        "evaluation.steps=[0,1]",
    ]
    result = distmeta.train(distmeta.load_config(None, overrides))
    for name in roots:
        assert 0.0 <= result.evaluation.values[f"{name}/acc.k1.steps1.mean"] <= 1.0
    caches = sorted(
        p.name for root in {cifar, roots["tieredimagenet"], roots["cub"]} for p in (root / ".distmeta_cache").glob("*-*")
    )
    assert [c for c in caches if not c.endswith(".lock")] == sorted(
        f"{name}-{split}-size32" for name in roots for split in ("train", "val", "test")
    ), "every split decoded once into its cache"
    assert main(["eval", "--checkpoint", str(result.last_checkpoint), "--json", "evaluation.num_tasks=4"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= report["cub/acc.k1.steps1.mean"] <= 1.0
