import re
from pathlib import Path

import pytest

from distmeta.config import DistMetaConfig, from_yaml_text, load, to_flat_dict, to_yaml
from distmeta.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_says_how_to_run_it(path):
    """The first line is the command; its overrides (e.g. tasks.root=...) make the config valid."""
    command = path.read_text().splitlines()[0].split()
    assert command[:4] == ["#", "distmeta", "train", f"configs/{path.name}"]
    cfg = load(path, command[4:])
    assert isinstance(cfg, DistMetaConfig)


def test_overrides_apply_with_types():
    cfg = load(
        Path(CONFIGS[0].parent, "glyphs_5w1s_anil.yaml"),
        ["trainer.max_steps=7", "algorithm.inner_lr=0.5", "model.hidden=[3,4]", "cluster.address=auto"],
    )
    assert cfg.trainer.max_steps == 7 and cfg.algorithm.inner_lr == 0.5
    assert cfg.model.hidden == [3, 4] and cfg.cluster.address == "auto"


def test_yaml_round_trip_and_flat_params():
    cfg = load(None, ["seed=5", "algorithm.name=fomaml"])
    again = from_yaml_text(to_yaml(cfg))
    assert again == cfg
    flat = to_flat_dict(cfg)
    assert flat["seed"] == 5 and flat["algorithm.name"] == "fomaml" and "cluster.num_shards" in flat


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["trainer.max_step=5"], "unknown config key 'trainer.max_step'; did you mean 'trainer.max_steps'?"),
        (["algoritm.name=maml"], "did you mean 'algorithm"),
        (["trainer.max_steps=abc"], "config key 'trainer.max_steps' has the wrong type"),
        (["algorithm.meta_lr=-0.1"], "config key 'algorithm.meta_lr': must be positive"),
        (["algorithm.inner_lr=0"], "config key 'algorithm.inner_lr': must be positive"),
        (["trainer.max_steps=0"], "config key 'trainer.max_steps': must be positive"),
        (["algorithm.inner_steps=-1"], "config key 'algorithm.inner_steps'"),
        (["algorithm.name=reptil"], "config key 'algorithm.name': 'reptil' is not one of maml, fomaml"),
        (["cluster.num_shards=4", "algorithm.meta_batch_size=3"], "cannot be split over cluster.num_shards=4"),
        (["tasks.amplitude=[5, 1]"], "config key 'tasks.amplitude'"),
        (["trainer=5"], "'trainer=5': trainer is a section; set its keys one by one"),
        (["noequals"], "is not of the form key=value"),
        (["tasks.family=omniglot"], "tasks.family=omniglot reads a local copy of the dataset: set tasks.root"),
        (["tasks.family=glyphs", "tasks.class_split=[10,2,2]"], "only omniglot takes one"),
        (["tasks.family=miniimagenet", "tasks.root=x", "tasks.rotations=true"], "rotated photos are not new classes"),
        (["tasks.family=glyphs", "tasks.ways=1"], "an episode needs at least 2 classes"),
        (["tasks.family=glyphs", "tasks.shard_by=rows"], "'rows' is not one of tasks, family, classes"),
        (["model.name=conv4"], "regression inputs are scalars: use model.name=mlp"),
        (["tasks.family=glyphs", "algorithm.name=anil", "algorithm.inner_steps=0"], "anil needs at least one inner step"),
        (["algorithm.chunk_size=-2"], "config key 'algorithm.chunk_size': must be zero or positive"),
        (["algorithm.inner_grad_clip=-1"], "config key 'algorithm.inner_grad_clip': must be zero or positive"),
        (
            ["algorithm.name=protonet", "tasks.family=glyphs", "algorithm.inner_grad_clip=10"],
            "protonet has no inner loop to clip",
        ),
        (
            ["tasks.family=navigation2d", "algorithm.name=maml_rl", "model.name=gaussian_mlp", "algorithm.inner_grad_clip=10"],
            "'algorithm.inner_grad_clip'",
        ),
        (["algorithm.reptile.inner_batch=-1"], "config key 'algorithm.reptile.inner_batch'"),
        (["tasks.shard_by=family"], "list them in tasks.families"),
        (["tasks.families=[{name: sine}, {name: cubic}]"], "'tasks.families[1].name': 'cubic' is not one of"),
        (["tasks.families=[{name: sine}, {name: sine}]"], "each family needs its own label"),
        (["tasks.families=[{name: sine, weight: 0}]"], "weight and loss_weight must be positive"),
        (["tasks.families=[{name: glyphs}, {name: omniglot}]"], "'tasks.families[1].root': omniglot reads a local copy"),
        (["tasks.families=[{name: glyphs}, {name: sine}]"], "a mixture is all regression"),
        (
            ["tasks.family=glyphs", "tasks.shard_by=classes", "tasks.class_partitions=0"],
            "'tasks.class_partitions': must be at least 1",
        ),
        (
            ["tasks.family=glyphs", "algorithm.name=mmaml", "model.name=conv4", "algorithm.mmaml.standardize=true"],
            "'algorithm.mmaml.standardize': it standardises regression targets",
        ),
        (["tasks.family_weighting=equal"], "'equal' is not one of count, uniform, weights, normalized, pcgrad"),
        (
            ["tasks.families=[{name: glyphs}, {name: glyphs, label: g3, ways: 3}]"],
            "the families have different ways (glyphs 5, g3 3): one shared head cannot classify them all; set model.heads=per_family",
        ),
        (["tasks.family=glyphs", "model.heads=per_family"], "list them in tasks.families"),
        (
            ["tasks.families=[{name: glyphs}, {name: glyphs, label: g2}]", "model.heads=per_family", "algorithm.name=protonet"],
            "protonet has no head",
        ),
        (["model.heads=multi"], "'model.heads': 'multi' is not one of shared, per_family"),
        (["tasks.families=[{name: sine, ways: 3}, {name: linear}]"], "'tasks.families[0].ways': ways are for image families"),
        (["tasks.families=[{name: glyphs, shots: -1}]"], "'tasks.families[0].shots': must be zero (tasks.shots) or positive"),
        (["cluster.placement_strategy=spread"], "'cluster.placement_strategy': 'spread' is not one of PACK, SPREAD"),
        (["cluster.learner_device=gpu"], "'cluster.learner_device': 'gpu' is not one of cpu, cuda"),
        (["cluster.aggregation=ring"], "'cluster.aggregation': 'ring' is not one of learner, allreduce"),
        (["cluster.aggregation=allreduce", "cluster.num_shards=0"], "allreduce runs among shard actors"),
        (["cluster.aggregation=allreduce", "trainer.staleness=1"], "'trainer.staleness': pipelines the learner's update"),
        (["cluster.replica_calls=graph"], "'cluster.replica_calls': 'graph' is not one of tasks, compiled"),
        (["cluster.replica_calls=compiled"], "it needs cluster.aggregation=allreduce"),
        (["cluster.collective=mpi"], "'cluster.collective': 'mpi' is not one of auto, gloo, nccl"),
        (["cluster.aggregation=allreduce", "cluster.collective=nccl"], "nccl joins the replicas' GPUs"),
        (["trainer.precision=16"], "'trainer.precision': '16' is not one of 32, bf16-mixed"),
        (["algorithm.batching=batched"], "'algorithm.batching': 'batched' is not one of auto, vmap, loop"),
        (["model.widths=[8,8,8,8]"], "'model.widths': sets the stage widths of resnet12, wrn28_10; model.name=mlp takes none"),
        (
            ["tasks.family=glyphs", "model.name=resnet12", "model.widths=[8,8]"],
            "'model.widths': resnet12 takes 4 positive widths (default [64, 160, 320, 640]), got [8, 8]",
        ),
        (["tasks.family=glyphs", "model.name=wrn28_10", "model.widths=[8,8,0,8]"], "wrn28_10 takes 4 positive widths"),
        (["model.name=resnet12"], "regression inputs are scalars: use model.name=mlp, not resnet12"),
        (
            ["tasks.family=glyphs", "model.name=conv4", "model.dropblock=0.1"],
            "'model.dropblock': sets the DropBlock of resnet12; model.name=conv4 has none",
        ),
        (["tasks.family=glyphs", "model.name=wrn28_10", "model.dropblock_size=2"], "'model.dropblock_size': sets the DropBlock"),
        (["tasks.family=glyphs", "model.name=resnet12", "model.dropblock=1.0"], "in [0, 1), got 1.0"),
        (["tasks.family=glyphs", "model.name=resnet12", "model.dropblock_size=-1"], "a square's side (0: auto), got -1"),
        (["tracking.system_metrics_s=-1"], "'tracking.system_metrics_s': must be zero or positive"),
        (
            ["algorithm.name=maml_rl"],
            "'algorithm.name': maml_rl learns from rollouts: use an environment family (tasks.family=navigation2d",
        ),
        (["model.name=gaussian_mlp"], "'model.name': gaussian_mlp is a policy, for environment families only"),
        (
            ["tasks.family=navigation2d"],
            "navigation2d's tasks are environments: use maml_rl, fomaml_rl, promp_rl, pretrain_rl, not maml",
        ),
        (["tasks.family=navigation2d", "algorithm.name=maml_rl"], "needs a policy network: use model.name=gaussian_mlp, not mlp"),
        (
            ["tasks.families=[{name: navigation2d}, {name: sine}]", "algorithm.name=maml_rl", "model.name=gaussian_mlp"],
            "'sine': a mixture is all regression (sine, linear, quadratic, harmonic, parabola, tanh, l1), all image",
        ),
        (
            ["tasks.family=navigation2d", "algorithm.name=maml_rl", "model.name=gaussian_mlp", "tasks.x_range=[0,1]"],
            "'tasks.x_range'",
        ),
        (
            [
                "tasks.families=[{name: navigation2d}, {name: halfcheetah_dir}]",
                "algorithm.name=maml_rl",
                "model.name=gaussian_mlp",
            ],
            "'tasks.families': one policy network serves a run: its environments must share observation and action sizes",
        ),
        (
            ["tasks.family=navigation2d", "algorithm.name=maml_rl", "model.name=gaussian_mlp", "algorithm.rl.discount=0"],
            "'algorithm.rl.discount': must be in (0, 1], got 0",
        ),
        (
            ["tasks.family=navigation2d", "algorithm.name=maml_rl", "model.name=gaussian_mlp", "algorithm.rl.epochs=3"],
            "'algorithm.rl.epochs': does not apply to maml_rl: it applies to promp_rl only (got 3)",
        ),
        (
            ["tasks.family=navigation2d", "algorithm.name=promp_rl", "model.name=gaussian_mlp", "algorithm.rl.clip=0"],
            "'algorithm.rl.clip': must be positive, got 0",
        ),
        (
            ["tasks.family=navigation2d", "algorithm.name=promp_rl", "model.name=gaussian_mlp", "trainer.staleness=1"],
            "'trainer.staleness': promp_rl's epochs each need the update before them",
        ),
        (
            [
                "tasks.family=navigation2d",
                "algorithm.name=promp_rl",
                "model.name=gaussian_mlp",
                "cluster.num_shards=2",
                "cluster.aggregation=allreduce",
            ],
            "'cluster.aggregation': promp_rl takes several updates per meta-step on the learner",
        ),  # fmt: skip
        (
            ["model.share=none"],
            "'model.share': 'none' gives each family of a mixture its own network: list them in tasks.families",
        ),
        (["model.share=some"], "'model.share': 'some' is not one of all, none"),
        (
            ["tasks.families=[{name: sine}, {name: linear}]", "model.share=none", "model.heads=per_family"],
            "'model.heads': with model.share=none each family's network has a head of its own already: use shared",
        ),
        (
            [
                "tasks.families=[{name: glyphs}, {name: omniglot, root: /x}]",
                "tasks.family=glyphs",
                "model.name=conv4",
                "algorithm.name=protonet",
                "model.share=none",
            ],
            "'model.share': 'none' with running-statistics norms (model.norm=auto with protonet) is not supported",
        ),  # fmt: skip
        (
            ["tasks.families=[{name: sine}, {name: linear, weight: 2}]", "tasks.family_sampling=stratified"],
            "'tasks.families[1].weight': tasks.family_sampling=stratified takes every family alike",
        ),
        (
            ["tasks.families=[{name: sine}]", "tasks.family_sampling=round"],
            "'tasks.family_sampling': 'round' is not one of weighted, stratified",
        ),
        (["tasks.noise=-0.1"], "'tasks.noise': the targets' noise standard deviation must be 0 or more, got -0.1"),
        (["tasks.family=glyphs", "model.name=conv4", "tasks.noise=0.3"], "'tasks.noise': does not apply to image families"),
        (
            ["tasks.families=[{name: glyphs, noise: 0.3}]", "tasks.family=glyphs", "model.name=conv4"],
            "'tasks.families[0].noise': the targets' noise standard deviation is for regression families, not glyphs",
        ),
        (
            ["tasks.families=[{name: tanh, noise: -1}]"],
            "'tasks.families[0].noise': the targets' noise standard deviation must be",
        ),
        (["cluster.dashboard=true", "cluster.num_shards=0"], "'cluster.dashboard': starts the dashboard of an in-process Ray"),
        (["cluster.dashboard=true", "cluster.address=auto"], "a cluster's dashboard is the cluster's own"),
        (
            ["tracking.register_model=m", "tasks.families=[{name: sine}, {name: linear}]", "model.heads=per_family"],
            "'tracking.register_model': registers the adaptive model, which no run with per-family heads",
        ),
    ],
)
def test_bad_values_name_the_key(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load(None, overrides)
    assert expected in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse .*bad.yaml as YAML"):
        load(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load(scalar)


@pytest.mark.parametrize(
    "overrides, norm, rate",
    [
        (["algorithm.name=protonet"], "running", 0.1),  # MetaOptNet's setting for metric methods
        (["algorithm.name=maml"], "batch", 0.0),  # MAML's reference: transductive norms, no DropBlock
        (["algorithm.name=maml", "model.dropblock=0.2", "model.norm=running"], "running", 0.2),
        (["algorithm.name=protonet", "model.dropblock=0"], "running", 0.0),
    ],
)
def test_resnet12_defaults_follow_the_algorithm(overrides, norm, rate):
    from distmeta.recipe import Recipe

    spec = Recipe.from_config(load(None, ["tasks.family=glyphs", "model.name=resnet12", *overrides])).model_spec
    assert (spec.norm, spec.dropblock) == (norm, rate)
    conv = Recipe.from_config(load(None, ["tasks.family=glyphs", "model.name=conv4", "algorithm.name=protonet"]))
    assert conv.model_spec.dropblock == 0.0


def test_target_noise_reaches_each_family_from_tasks_or_its_own_entry():
    from distmeta.recipe import Recipe

    families = "tasks.families=[{name: sine}, {name: parabola, label: quadratic}, {name: tanh, noise: 0.1}, {name: l1, noise: 0}]"
    recipe = Recipe.from_config(load(None, [families, "tasks.noise=0.3"]))
    assert {f.name: f.noise for f in recipe.families()} == {"sine": 0.3, "quadratic": 0.3, "tanh": 0.1, "l1": 0.0}
    assert Recipe.from_config(load(None, ["tasks.family=tanh", "tasks.noise=0.3"])).families()[0].noise == 0.3


def test_the_inner_gradient_clamp_reaches_every_gradient_adaptation():
    from distmeta.recipe import Recipe

    for name in ("maml", "fomaml", "anil", "metasgd", "reptile", "cavia", "mmaml"):
        assert (
            Recipe.from_config(load(None, [f"algorithm.name={name}", "algorithm.inner_grad_clip=10"])).algorithm.inner.clip == 10
        )
    assert Recipe.from_config(load(None, [])).algorithm.inner.clip == 0


def test_the_mmaml_section_reaches_the_algorithm():
    from distmeta.recipe import Recipe

    algo = Recipe.from_config(
        load(None, ["algorithm.name=mmaml", "algorithm.mmaml.encoder=lstm", "algorithm.mmaml.hidden=12"])
    ).algorithm
    assert (algo.encoder, algo.hidden) == ("lstm", 12)


def test_another_algorithm_ignores_the_mmaml_section_on_images():
    """Only MMAML reads ``algorithm.mmaml.*``: a base config's ``standardize: true`` does not stop
    MAML on an image family (MMAML on one: the refusal in test_bad_values_name_the_key)."""
    cfg = load(None, ["tasks.family=glyphs", "model.name=conv4", "algorithm.mmaml.standardize=true"])
    assert cfg.algorithm.name == "maml" and cfg.algorithm.mmaml.standardize


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["algorithm.name=cavia", "tasks.family=glyphs", "model.name=resnet12"], "'model.name': cavia modulates the network's layers: use model.name=mlp, conv4, not resnet12"),
        (["algorithm.name=mmaml", "tasks.families=[{name: sine}, {name: linear}]", "model.share=none"], "'model.share': mmaml modulates one network: use model.heads=shared and model.share=all"),
        (["algorithm.name=mmaml", "algorithm.mmaml.hidden=0"], "'algorithm.mmaml.hidden': the modulation network needs a positive width, got 0"),
        (["algorithm.name=mmaml", "algorithm.mmaml.encoder=gru"], "'algorithm.mmaml.encoder': 'gru' is not one of set, lstm"),
        (["algorithm.name=cavia", "algorithm.cavia.contexts=0"], "'algorithm.cavia.contexts': a task adapts at least 1 context parameter, got 0"),
    ],
)  # fmt: skip
def test_modulation_settings_name_the_key(overrides, expected):
    from distmeta.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expected)):
        load(None, overrides)
