import pytest
import torch

from distmeta.tasks import TRAIN, VALIDATION
from distmeta.tasks.glyphs import GlyphFamily


def test_at_least_1600_classes_split_by_alphabet_without_overlap():
    splits = {s: set(GlyphFamily(split=s).classes()) for s in ("train", "val", "test")}
    assert GlyphFamily().num_classes >= 1600
    assert sum(len(c) for c in splits.values()) == GlyphFamily().num_classes
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"]) and not (splits["val"] & splits["test"])


def test_episodes_are_pure_functions_of_seed_step_index():
    f = GlyphFamily(ways=5, shots=1, query=3)
    whole = f.sample(0, TRAIN, 2, range(4))
    part = f.sample(0, TRAIN, 2, [3])
    for a, b in zip(whole.task(3).tensors(), part.tensors()):
        assert torch.equal(a, b)
    assert not torch.equal(whole.support_x, f.sample(0, TRAIN, 3, range(4)).support_x)
    assert not torch.equal(whole.support_x, f.sample(0, VALIDATION, 2, range(4)).support_x)


def test_episode_layout_and_labels():
    f = GlyphFamily(ways=4, shots=2, query=3, image_size=28)
    b = f.sample(1, TRAIN, 0, range(2))
    assert b.support_x.shape == (2, 8, 1, 28, 28) and b.query_x.shape == (2, 12, 1, 28, 28)
    assert b.support_y.tolist()[0] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert b.query_y.dtype == torch.int64 and b.query_y.tolist()[1] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert 0.0 <= b.support_x.min() and b.support_x.max() <= 1.0 and b.support_x.mean() > 0.01


def test_drawings_vary_but_resemble_their_class():
    f = GlyphFamily()
    def corr(a, b):
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return (a @ b / (a.norm() * b.norm())).item()
    classes = list(f.classes())[:40]
    within = [corr(f.image(c, 0), f.image(c, 1)) for c in classes]
    between = [corr(f.image(c, 0), f.image(d, 1)) for c, d in zip(classes, classes[1:])]
    assert all(not torch.equal(f.image(c, 0), f.image(c, 1)) for c in classes)
    assert sum(within) / len(within) > sum(between) / len(between) + 0.2


@pytest.mark.parametrize("kwargs, message", [
    (dict(ways=300, split="val"), "ways=300 is more than the 198 classes of the val split"),
    (dict(shots=10, query=15), "shots \\+ query = 25 exceeds the 20 drawings"),
    (dict(split="dev"), "split must be one of"),
])
def test_impossible_episodes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GlyphFamily(**kwargs)
