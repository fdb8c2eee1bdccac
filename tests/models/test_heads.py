"""Per-family heads on a shared body: a family's view is an ordinary network over the shared
tensors, and a worker's meta-gradient for a family equals the single-head network's, placed on
the body and that family's head (zero on the other heads)."""

import pytest
import torch

from distmeta.algorithms import build, meta_grad
from distmeta.models import MLP, ModelSpec, family_view, flatten, view_names
from distmeta.shard.spec import WorkerSpec
from distmeta.shard.worker import ShardWorker
from distmeta.tasks import TRAIN, EpisodeFamily, GlyphSource
from distmeta.tasks.mixture import Mixture

SPEC = ModelSpec("mlp", (1, 28, 28), 3, hidden=(16,), heads=(("a", 3), ("b", 5)))


def test_a_view_is_the_single_head_network_over_the_shared_tensors():
    torch.manual_seed(0)
    multi = SPEC.build()
    assert [n for n, _ in multi.named_parameters()] == [
        "body.0.weight",
        "body.0.bias",
        "heads.a.weight",
        "heads.a.bias",
        "heads.b.weight",
        "heads.b.bias",
    ]
    view = family_view(multi, "b")
    assert view_names(multi, view) == {
        "body.0.weight": "body.0.weight",
        "body.0.bias": "body.0.bias",
        "head.weight": "heads.b.weight",
        "head.bias": "heads.b.bias",
    }
    single = MLP(784, (16,), 5)
    single.load_state_dict({n: multi.state_dict()[m] for n, m in view_names(multi, view).items()})
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(view(x), single(x))
    torch.testing.assert_close(multi(x, family="b"), single(x))
    with torch.no_grad():
        multi.heads["b"].bias.add_(1.0)  # a change to the multi-head model is a change to the view
    assert torch.allclose(view.head.bias, multi.heads["b"].bias)
    with pytest.raises(ValueError, match="pass family="):
        multi(x)


@pytest.mark.parametrize("name", ["maml", "anil", "metasgd"])
def test_a_familys_meta_gradient_is_the_single_head_networks_on_its_own_head(name):
    algo = build(name, loss="cross_entropy", steps=2, lr=0.1)
    families = (EpisodeFamily("a", ways=3, shots=1, query=2), EpisodeFamily("b", ways=5, shots=1, query=2))
    spec = WorkerSpec(seed=4, families=families, mixture=Mixture(("a", "b"), (1.0, 1.0)), model=SPEC, algorithm=algo, threads=1)
    images = GlyphSource().load("val")
    worker = ShardWorker(0, spec, images, images)
    torch.manual_seed(0)
    full = {k: p.detach() for k, p in worker.model.named_parameters()}
    result = worker.compute(1, flatten(full), 1, list(range(12)))
    for label, fam in zip("ab", families):
        idx = [i for i in range(12) if spec.mixture.family_of(4, TRAIN, 1, i) == "ab".index(label)]
        view = family_view(worker.model, label)
        names = view_names(worker.model, view)
        tasks = fam.with_data(images).sample(4, TRAIN, 1, idx)
        ref = meta_grad(algo, view, {v: full[n] for v, n in names.items()}, {}, tasks).grads
        got = dict(zip(full, torch.split(result.family_grads[label], [p.numel() for p in full.values()])))
        for v, n in names.items():
            torch.testing.assert_close(got[n].view_as(ref[v]), ref[v], rtol=1e-5, atol=1e-7)
        other = [n for n in full if n not in names.values()]
        assert other and all(got[n].abs().max() == 0 for n in other), "the other family's head gets no gradient"


def test_separate_networks_share_nothing_and_a_view_is_the_familys_own_network():
    """``model.share=none``: whole networks per family; a family's meta-gradient from a worker
    is its own network's, zero on every other network."""
    spec = ModelSpec("mlp", (1, 28, 28), 3, hidden=(16,), heads=(("a", 3), ("b", 5)), share="none")
    torch.manual_seed(0)
    separate = spec.build()
    assert [n for n, _ in separate.named_parameters()] == [
        f"nets.{f}.{layer}.{t}" for f in "ab" for layer in ("body.0", "head") for t in ("weight", "bias")
    ]
    view = family_view(separate, "b")
    assert view is separate.nets["b"] and view_names(separate, view)["head.weight"] == "nets.b.head.weight"
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(separate(x, family="a"), separate.nets["a"](x))
    algo = build("maml", loss="cross_entropy", steps=1, lr=0.1)
    families = (EpisodeFamily("a", ways=3, shots=1, query=2), EpisodeFamily("b", ways=5, shots=1, query=2))
    worker_spec = WorkerSpec(seed=4, families=families, mixture=Mixture(("a", "b"), (1.0, 1.0)), model=spec, algorithm=algo)
    images = GlyphSource().load("val")
    worker = ShardWorker(0, worker_spec, images, images)
    full = {k: p.detach() for k, p in worker.model.named_parameters()}
    result = worker.compute(1, flatten(full), 1, list(range(8)))
    for label in "ab":
        got = dict(zip(full, torch.split(result.family_grads[label], [p.numel() for p in full.values()])))
        assert all(got[n].abs().max() > 0 for n in full if n.startswith(f"nets.{label}."))
        assert all(got[n].abs().max() == 0 for n in full if not n.startswith(f"nets.{label}."))
    with pytest.raises(KeyError, match="no network part for family 'c'"):
        separate.view("c")
