import numpy as np
import pytest
import torch

from distmeta.algorithms import build, meta_grad_loop
from distmeta.models import MLP, ModelSpec, flatten
from distmeta.shard.spec import WorkerSpec
from distmeta.shard.worker import ShardWorker
from distmeta.tasks import TRAIN, SineFamily
from distmeta.tasks.mixture import Mixture
from tests.shard.helpers import grad_sum, metric_sums


def _spec(**kw):
    kw.setdefault("families", (SineFamily(),))
    kw.setdefault("mixture", Mixture(("sine",), (1.0,)))
    kw.setdefault("model", ModelSpec("mlp", (1,), 1, hidden=(40, 40)))
    return WorkerSpec(seed=3, algorithm=build("maml", steps=1, lr=0.01), threads=1, **kw)


def _weights():
    torch.manual_seed(0)
    return flatten({k: p.detach() for k, p in MLP(1, (40, 40), 1).named_parameters()})


def test_worker_samples_its_tasks_and_sums_their_meta_gradients():
    worker = ShardWorker(1, _spec())
    w = _weights()
    result = worker.compute(5, w.numpy(), 5, [2, 3, 4])  # an array, as it arrives through Ray
    assert (result.shard, result.step, result.weights_version, result.task_count) == (1, 5, 5, 3)
    assert result.family_counts == {"sine": 3} and grad_sum(result).shape == w.shape
    model = MLP(1, (40, 40), 1)
    params = {k: p.detach() for k, p in model.named_parameters()}
    offset = 0
    for k, p in params.items():
        params[k] = w[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    tasks = SineFamily().sample(3, TRAIN, 5, [2, 3, 4])
    ref = meta_grad_loop(build("maml", steps=1, lr=0.01), model, params, {}, tasks)
    torch.testing.assert_close(grad_sum(result), flatten(ref.grads), rtol=1e-5, atol=1e-6)
    assert np.isclose(metric_sums(result)["loss"], ref.metrics["loss"].sum().item(), rtol=1e-5)


@pytest.mark.slow
def test_compiled_mixture_worker_matches_eager_with_changing_family_counts():
    """Per-family task counts change each step; the compiled path cuts them into powers of two
    (a few shapes, each compiled once) and must still equal the eager sums: gradients and metrics.
    (A single family is the same path with one count.)"""
    from distmeta.tasks import FunctionFamily
    from distmeta.tasks.mixture import Mixture

    spec = _spec(families=(SineFamily(), FunctionFamily("linear")), mixture=Mixture(("sine", "linear"), (1.0, 1.0)))
    eager, compiled = ShardWorker(0, spec), ShardWorker(0, _spec(compile=True, families=spec.families, mixture=spec.mixture))
    w = _weights()
    for step in (0, 3, 5):  # the steps whose family counts differ (7+4, 6+5, 8+3): every cut size, each a change
        a = eager.compute(step, w, step, range(11))
        b = compiled.compute(step, w, step, range(11))
        assert compiled.compiled and a.family_counts == b.family_counts
        for f in a.family_grads:
            assert ((a.family_grads[f] - b.family_grads[f]).norm() / a.family_grads[f].norm()).item() < 1e-5
        assert np.isclose(metric_sums(a)["loss"], metric_sums(b)["loss"], rtol=1e-5)


def test_bf16_mixed_precision_is_close_to_float32_and_returns_float32():
    w = _weights()
    exact = ShardWorker(0, _spec()).compute(2, w, 2, list(range(8)))
    mixed = ShardWorker(0, _spec(precision="bf16-mixed")).compute(2, w, 2, list(range(8)))
    assert grad_sum(mixed).dtype == torch.float32 and not torch.equal(grad_sum(mixed), grad_sum(exact))  # autocast took effect
    cos = torch.nn.functional.cosine_similarity(grad_sum(mixed), grad_sum(exact), dim=0).item()
    assert cos > 0.999 and ((grad_sum(mixed) - grad_sum(exact)).norm() / grad_sum(exact).norm()).item() < 0.05


def test_a_cuda_shard_without_cuda_computes_on_the_cpu_and_says_so(caplog):
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    worker = ShardWorker(0, _spec(device="cuda"))
    assert worker.device.type == "cpu" and "CUDA is not available" in caplog.text


def test_loop_batching_equals_vmap_and_auto_picks_the_loop_for_images_on_cpu():
    from distmeta import config
    from distmeta.recipe import Recipe
    from distmeta.tasks import EpisodeFamily, GlyphSource

    family = EpisodeFamily("glyphs", ways=3, shots=1, query=2)
    kw = dict(
        seed=2,
        families=(family,),
        mixture=Mixture(("glyphs",), (1.0,)),
        model=ModelSpec("conv4", (1, 28, 28), 3, filters=8),
        algorithm=build("maml", loss="cross_entropy", steps=2, lr=0.4),
        threads=1,
    )
    images = GlyphSource().load("val")
    torch.manual_seed(0)
    w = flatten({k: p.detach() for k, p in kw["model"].build().named_parameters()})
    vmapped = ShardWorker(0, WorkerSpec(**kw, batching="vmap"), images).compute(1, w, 1, list(range(5)))
    loop_worker = ShardWorker(0, WorkerSpec(**kw, batching="loop"), images)
    looped = loop_worker.compute(1, w, 1, list(range(5)))
    assert ((grad_sum(looped) - grad_sum(vmapped)).norm() / grad_sum(vmapped).norm()).item() < 1e-5  # float32 order
    assert metric_sums(looped).keys() == metric_sums(vmapped).keys()
    # a step the learner does not log: the loop leaves out the pre-adaptation forward, nothing else
    quiet = loop_worker.compute(1, w, 1, list(range(5)), diagnostics=False)
    assert torch.equal(grad_sum(quiet), grad_sum(looped))
    assert set(metric_sums(quiet)) == {
        k for k in metric_sums(looped) if not k.startswith("preadapt")
    } and "query_acc" in metric_sums(quiet)
    image = Recipe.from_config(config.load(None, ["tasks.family=glyphs"]))
    assert image.batching_on("cpu") == "loop" and image.batching_on("cuda") == "vmap"
    assert Recipe.from_config(config.load(None, [])).batching_on("cpu") == "vmap"  # sine: batched wins
    vmap = Recipe.from_config(config.load(None, ["tasks.family=glyphs", "algorithm.batching=vmap"]))
    assert vmap.batching_on("cpu") == "vmap"


def test_a_later_promp_epoch_computes_on_the_kept_trajectories_or_collects_them_again_at_the_origin():
    """Epoch 0 collects at the step's first weights and keeps the trajectories; a later epoch at
    other weights uses them. A worker without them (a restarted actor, another actor's shard)
    collects them again from the origin weights it is sent: the same result, to the bit."""
    from distmeta.tasks.rl import navigation2d

    spec = WorkerSpec(
        seed=3, families=(navigation2d(shots=3, query=2),), mixture=Mixture(("navigation2d",), (1.0,)),
        model=ModelSpec("gaussian_mlp", (2,), 2, hidden=(8, 8)), algorithm=build("promp_rl", loss="return", steps=1, lr=0.1),
    )  # fmt: skip
    torch.manual_seed(0)
    origin = flatten({k: p.detach() for k, p in spec.model.build().named_parameters()})
    moved = origin + 0.01 * torch.randn(origin.shape, generator=torch.Generator().manual_seed(1))
    keeper, fresh = ShardWorker(0, spec), ShardWorker(1, spec)
    keeper.compute(4, origin, 4, [0, 1, 2])
    kept = keeper.compute(4, moved, 4, [0, 1, 2], epoch=1, origin=origin)
    again = fresh.compute(4, moved, 4, [0, 1, 2], slot=0, epoch=1, origin=origin)
    assert torch.equal(grad_sum(kept), grad_sum(again))
    assert metric_sums(kept)["outer_kl"] > 0  # computed at the moved weights, against the origin's policy
    collected_elsewhere = keeper.compute(4, moved, 4, [0, 1, 2], epoch=1, origin=moved)
    assert torch.equal(grad_sum(kept), grad_sum(collected_elsewhere))  # kept: the origin sent is not used
    with pytest.raises(ValueError, match="origin"):
        ShardWorker(2, spec).compute(4, moved, 4, [0, 1, 2], epoch=1)


def test_a_mixtures_families_on_one_dense_network_compute_in_one_call_like_each_alone(monkeypatch):
    from distmeta.shard import fusion
    from distmeta.shard import worker as worker_module
    from distmeta.tasks import FunctionFamily

    names = ("sine", "linear", "tanh")
    families = (SineFamily(), FunctionFamily("linear"), FunctionFamily("tanh"))
    spec = _spec(families=families, mixture=Mixture(names, (1.0, 1.0, 1.0)))
    fused, apart = ShardWorker(0, spec), ShardWorker(0, spec)
    apart.fuses = False
    calls = []
    grouped = worker_module.meta_grad_grouped
    monkeypatch.setattr(worker_module, "meta_grad_grouped", lambda *a, **k: calls.append(a[6]) or grouped(*a, **k))
    w = _weights()
    a, b = fused.compute(4, w, 4, range(12)), apart.compute(4, w, 4, range(12))
    assert calls == [3] and a.family_counts == b.family_counts and set(a.family_counts) == set(names)
    for f in names:
        assert ((a.family_grads[f] - b.family_grads[f]).norm() / b.family_grads[f].norm()).item() < 1e-5
        for k, v in b.family_metrics[f].items():
            assert np.isclose(a.family_metrics[f][k], v, rtol=1e-5), (f, k)
    # a network too big for every family's tasks in one call: two families' tasks, then the third alone
    monkeypatch.setattr(fusion, "WEIGHT_COPIES", 8 * sum(p.numel() for p in fused.model.parameters()))
    assert fused.compute(4, w, 4, range(12)).family_counts == a.family_counts and calls == [3, 2]


def test_families_share_a_call_only_with_the_same_task_shapes_a_small_network_and_no_views():
    from distmeta.shard.fusion import WEIGHT_COPIES, dense, fusion_groups
    from distmeta.tasks import FunctionFamily

    sine, more = SineFamily(shots=5, query=5), SineFamily(shots=10, query=5)
    tasks = {f: fam.sample(0, TRAIN, 0, [0, 1]) for f, fam in enumerate((sine, more, FunctionFamily("linear", shots=5, query=5)))}
    assert fusion_groups(tasks, lambda f: True) == [(0, 2), (1,)]
    assert fusion_groups(tasks, lambda f: f != 2) == [(2,), (0,), (1,)]
    # a call holds at most WEIGHT_COPIES tasks x parameters: 4 tasks fit, 3 do not hold both families
    assert fusion_groups(tasks, lambda f: True, parameters=WEIGHT_COPIES // 4) == [(0, 2), (1,)]
    assert fusion_groups(tasks, lambda f: True, parameters=WEIGHT_COPIES // 3) == [(0,), (2,), (1,)]
    assert dense(MLP(1, (8,), 1)) and not dense(ModelSpec("conv4", (1, 28, 28), 3, filters=8).build())
    heads = ShardWorker(0, _spec(families=(SineFamily(), FunctionFamily("linear")), mixture=Mixture(("sine", "linear"), (1.0, 1.0)),
                                 model=ModelSpec("mlp", (1,), 1, hidden=(8,), heads=(("sine", 1), ("linear", 1)))))  # fmt: skip
    assert heads.fuses and not heads._fusable(0) and not heads._fusable(1)  # each family computes on its own view
