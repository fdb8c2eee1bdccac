"""Contract 2: the meta-parameters after k steps do not depend on where the meta-batch ran."""

import time

import pytest
import torch

from tests.integration.helpers import params_of, rel_diff, small_run

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_in_process_one_and_two_actors_agree_after_20_steps(workdir, ray_runtime):
    # one algorithm: where a task runs is decided by the plan and the aggregation, which no
    # algorithm touches (each algorithm's batched path is checked against its loop in tests/algorithms)
    common = ["trainer.max_steps=20", "algorithm.name=maml", "algorithm.meta_lr=0.01"]
    results = {n: small_run(*common, f"cluster.num_shards={n}") for n in (0, 1, 2)}
    reference = params_of(results[0])
    start = params_of(small_run("trainer.max_steps=1", "cluster.num_shards=0", "algorithm.meta_lr=1e-9"))
    assert rel_diff(reference, start) > 1e-3  # training moved the weights: the comparison means something
    for n in (1, 2):
        assert rel_diff(params_of(results[n]), reference) < 1e-5, f"num_shards={n}"
    assert (results[2].checkpoint_dir / "last.ckpt").is_file()
    deadline = time.time() + 20  # killed actors hand their CPUs back asynchronously
    while ray_runtime.available_resources().get("CPU") != 2.0 and time.time() < deadline:
        time.sleep(0.2)
    assert ray_runtime.available_resources().get("CPU") == 2.0, "shard actors were released after fit"


MIXTURE = ["tasks.families=[{name: sine, weight: 2}, {name: linear}]", "trainer.max_steps=20", "algorithm.meta_lr=0.01"]


def test_mixture_by_family_on_two_actors_equals_by_tasks_on_one_and_in_process(workdir, ray_runtime):
    """Same task stream, same aggregation: who owns which family does not change the result.
    (``uniform`` weighting across shard layouts: tests/integration/test_allreduce.py; each
    weighting's maths: tests/learner/test_aggregate.py.)"""
    common = [*MIXTURE, "tasks.family_weighting=count"]
    by_family = params_of(small_run(*common, "tasks.shard_by=family", "cluster.num_shards=2"))
    by_tasks = params_of(small_run(*common, "tasks.shard_by=tasks", "cluster.num_shards=1"))
    in_process = params_of(small_run(*common, "tasks.shard_by=family", "cluster.num_shards=0"))
    sine_only = params_of(small_run("trainer.max_steps=20", "algorithm.meta_lr=0.01", "cluster.num_shards=0"))
    assert rel_diff(in_process, sine_only) > 1e-3  # the mixture is not the sine run under another name
    assert rel_diff(by_family, in_process) < 1e-5
    assert rel_diff(by_tasks, in_process) < 1e-5


def test_class_partitioned_image_mixture_is_the_same_on_two_actors_one_actor_and_in_process(workdir, ray_runtime):
    """``shard_by: classes``: a task's class partition is drawn from its key, and partitions are
    owned like families, so the class-partitioned run does not depend on the number of actors."""
    from tests.trees import omniglot_tree

    root = omniglot_tree(workdir / "omniglot")
    common = [
        "tasks.families=[{name: glyphs}, {name: omniglot}]",
        f"tasks.root={root}",
        "tasks.class_split=[10,3,5]",
        "tasks.ways=3",
        "tasks.shots=1",
        "tasks.query=2",
        "tasks.shard_by=classes",
        "tasks.class_partitions=3",
        "model.name=conv4",
        "model.filters=8",
        "algorithm.meta_batch_size=6",
        "trainer.max_steps=10",
        "trainer.val_tasks=4",
        "evaluation.num_tasks=4",
        "evaluation.query=3",
        "evaluation.steps=[0,1]",
        # Adam at 0.01 on this tiny conv net multiplies float-order noise ~10x per step (4e-8
        # after 1 step, 1e-3 after 10); at 0.001 the layouts agree to 5e-8 after 10 steps
        "algorithm.meta_lr=0.001",
        "algorithm.inner_lr=0.4",
    ]
    two = params_of(small_run(*common, "cluster.num_shards=2"))
    one = params_of(small_run(*common, "cluster.num_shards=1"))
    in_process = params_of(small_run(*common, "cluster.num_shards=0"))
    whole = params_of(small_run(*[c for c in common if "shard_by" not in c], "cluster.num_shards=0"))
    assert rel_diff(in_process, whole) > 1e-4  # drawing from one partition at a time is a different task stream
    assert rel_diff(two, in_process) < 1e-5
    assert rel_diff(one, in_process) < 1e-5


def test_running_norms_and_dropblock_are_the_same_on_two_actors_and_in_process(workdir, ray_runtime):
    """ProtoNets on ResNet-12 keep running statistics and drop blocks (``model.norm`` and
    ``model.dropblock`` unset): every shard measures its tasks' batch statistics and the learner
    averages them, and each task's squares are keyed by its own data, so neither the estimates
    nor the weights depend on the split."""
    import torch

    common = [
        "tasks.family=glyphs", "algorithm.name=protonet", "model.name=resnet12", "model.widths=[4,6,8,8]",
        "model.dropblock_size=2", "tasks.ways=3", "tasks.shots=1", "tasks.query=2", "algorithm.meta_batch_size=4",
        "trainer.max_steps=6", "evaluation.num_tasks=10", "evaluation.query=3", "algorithm.meta_lr=0.001",
    ]  # fmt: skip
    results = {n: small_run(*common, f"cluster.num_shards={n}") for n in (0, 2)}

    def estimates(result):
        return torch.cat(
            [b.reshape(-1) for name, b in result.model.named_buffers() if name.endswith(("running_mean", "running_var"))]
        )

    reference = estimates(results[0])
    assert reference.numel() == 2 * 4 * (4 + 6 + 8 + 8) and reference[:4].abs().min() > 0, "the estimates moved from 0"
    assert results[0].model.body[3].drop.rate == 0.1, "ProtoNets drop blocks by default"

    def weights(result):
        return torch.cat([p.detach().reshape(-1) for p in result.model.parameters()])

    from distmeta.tasks import EpisodeFamily, GlyphSource

    episode = EpisodeFamily("glyphs", ways=3, shots=1, query=2).with_data(GlyphSource().load("val")).sample(0, 0, 0, [0])

    def embeddings(result):  # (not the logits: squared distances between close embeddings cancel digits)
        with torch.no_grad():
            return result.model.eval()(torch.cat([episode.support_x[0], episode.query_x[0]]))

    for n in (2,):
        assert rel_diff(estimates(results[n]), reference) < 1e-6, f"num_shards={n}"
        assert rel_diff(weights(results[n]), weights(results[0])) < 1e-5, f"num_shards={n}"
        assert rel_diff(embeddings(results[n]), embeddings(results[0])) < 1e-5, f"num_shards={n}: the networks agree"
    saved = torch.load(results[2].last_checkpoint, weights_only=True)["state_dict"]
    assert any(k.endswith("running_var") for k in saved), "the estimates are checkpointed with the weights"


def test_separate_networks_train_each_on_its_own_family_on_any_number_of_actors(workdir, ray_runtime):
    """``model.share=none`` (Multi-MAML in one run): the sine network does not depend on the
    linear family's tasks (its ranges changed: the same sine network, to the bit), where one
    shared network does; and by family on 2 actors equals in-process."""
    separate = [*MIXTURE, "model.share=none", "tasks.family_weighting=uniform"]
    steeper = "tasks.families=[{name: sine, weight: 2}, {name: linear, ranges: {slope: [2, 3]}}]"

    def net(result, family: str) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for k, p in result.model.named_parameters() if k.startswith(f"nets.{family}.")])

    in_process = small_run(*separate, "cluster.num_shards=0")
    assert {k.split(".")[1] for k, _ in in_process.model.named_parameters()} == {"sine", "linear"}
    other_linear = small_run(*separate, steeper, "cluster.num_shards=0")
    assert torch.equal(net(other_linear, "sine"), net(in_process, "sine"))
    assert rel_diff(net(other_linear, "linear"), net(in_process, "linear")) > 1e-3
    shared = [*MIXTURE, "tasks.family_weighting=uniform", "cluster.num_shards=0"]
    assert rel_diff(params_of(small_run(*shared)), params_of(small_run(*shared, steeper))) > 1e-4  # the check can fail

    by_family = small_run(*separate, "tasks.shard_by=family", "cluster.num_shards=2")
    assert rel_diff(params_of(by_family), params_of(in_process)) < 1e-5


@pytest.mark.parametrize("algorithm", ["cavia", "mmaml"])
def test_modulated_algorithms_agree_in_process_and_on_one_and_two_actors(workdir, ray_runtime, algorithm):
    common = [*MIXTURE, f"algorithm.name={algorithm}", "trainer.max_steps=10", "algorithm.inner_lr=0.1"]
    in_process = params_of(small_run(*common, "cluster.num_shards=0"))
    start = params_of(small_run(*common, "cluster.num_shards=0", "trainer.max_steps=1", "algorithm.meta_lr=1e-9"))
    assert rel_diff(in_process, start) > 1e-3  # ten steps moved the weights
    for n in (1, 2):
        assert rel_diff(params_of(small_run(*common, f"cluster.num_shards={n}")), in_process) < 1e-5, f"num_shards={n}"
