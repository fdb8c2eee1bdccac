import pytest
import torch

from distmeta.tasks import TRAIN, VALIDATION, EpisodeFamily, GlyphSource


@pytest.fixture(scope="module")
def val_images():
    return GlyphSource().load("val")


def _family(data, **kw) -> EpisodeFamily:
    return EpisodeFamily("glyphs", **kw).with_data(data)


def test_at_least_1600_classes_split_by_alphabet_without_overlap():
    source = GlyphSource()
    splits = {s: set(source.classes(s)) for s in ("train", "val", "test")}
    assert source.num_classes >= 1600
    assert sum(len(c) for c in splits.values()) == source.num_classes
    assert (
        not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"]) and not (splits["val"] & splits["test"])
    )
    with pytest.raises(ValueError, match="split must be one of"):
        source.classes("dev")


def test_rendering_is_deterministic_and_stored_as_uint8(val_images):
    again = GlyphSource().drawings_of(GlyphSource().classes("val")[3])
    assert val_images.pixels.dtype.name == "uint8"
    assert val_images.pixels.shape == (6 * 33, 20, 1, 28, 28)
    assert (abs(val_images.pixels[3, :, 0].astype(float) / 255 - again.numpy()) <= 0.5 / 255 + 1e-6).all()
    assert not val_images.pixels.flags.writeable


def test_episodes_are_pure_functions_of_seed_step_index(val_images):
    f = _family(val_images, ways=5, shots=1, query=3)
    whole = f.sample(0, TRAIN, 2, range(4))
    part = f.sample(0, TRAIN, 2, [3])
    for a, b in zip(whole.slice(3, 4).tensors(), part.tensors()):
        assert torch.equal(a, b)
    assert not torch.equal(whole.support_x, f.sample(0, TRAIN, 3, range(4)).support_x)
    assert not torch.equal(whole.support_x, f.sample(0, VALIDATION, 2, range(4)).support_x)


def test_episode_layout_and_labels(val_images):
    b = _family(val_images, ways=4, shots=2, query=3).sample(1, TRAIN, 0, range(2))
    assert b.support_x.shape == (2, 8, 1, 28, 28) and b.query_x.shape == (2, 12, 1, 28, 28)
    assert b.support_y.tolist()[0] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert b.query_y.dtype == torch.int64 and b.query_y.tolist()[1] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert 0.0 <= b.support_x.min() and b.support_x.max() <= 1.0 and b.support_x.mean() > 0.01


def test_drawings_vary_but_resemble_their_class():
    source = GlyphSource()

    def corr(a, b):
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return (a @ b / (a.norm() * b.norm())).item()

    classes = list(source.classes("train"))[:40]
    within = [corr(source.drawings_of(c)[0], source.drawings_of(c)[1]) for c in classes]
    between = [corr(source.drawings_of(c)[0], source.drawings_of(d)[1]) for c, d in zip(classes, classes[1:])]
    assert all(not torch.equal(source.drawings_of(c)[0], source.drawings_of(c)[1]) for c in classes)
    # raw-pixel correlation is modest under the drawings' shifts and rotations, but clearly higher within a class
    assert sum(within) / len(within) > sum(between) / len(between) + 0.1


def test_rotations_add_three_rotated_copies_of_each_class(val_images):
    plain = _family(val_images, ways=5, shots=1, query=1)
    rotated = _family(val_images, ways=5, shots=1, query=1, rotations=True)
    assert rotated.pool_size() == 4 * plain.pool_size()
    b = rotated.sample(0, TRAIN, 0, range(30))
    # each drawn image is some stored drawing turned by a multiple of 90 degrees
    stored = torch.tensor(val_images.pixels.reshape(-1, 28, 28)).float() / 255
    turned = torch.cat([torch.rot90(stored, r, dims=(-2, -1)) for r in range(4)])
    x = b.support_x[0, 0, 0]
    assert ((turned - x).abs().flatten(1).max(1).values < 1e-6).any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ways=300), "ways=300 is more than its 198 classes"),
        (dict(shots=10, query=15), "shots \\+ query = 25 exceeds the 20 images per class"),
    ],
)
def test_impossible_episodes_are_refused(val_images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _family(val_images, **kwargs).sample(0, TRAIN, 0, [0])


def test_episodes_are_not_solvable_by_raw_pixel_matching():
    """Difficulty guard: 1-nearest-neighbour on raw pixels (the baseline a few-shot learner must
    beat) is far from perfect on 5-way 1-shot test episodes, yet well above chance (0.2)."""
    family = EpisodeFamily("glyphs", ways=5, shots=1, query=15).with_data(GlyphSource().load("test"))
    b = family.sample(0, TRAIN, 0, range(200))
    s, q = b.support_x.flatten(2), b.query_x.flatten(2)
    s, q = s - s.mean(-1, keepdim=True), q - q.mean(-1, keepdim=True)
    sim = torch.einsum("tqd,tsd->tqs", q / q.norm(dim=-1, keepdim=True), s / s.norm(dim=-1, keepdim=True))
    accuracy = (b.support_y.gather(1, sim.argmax(-1)) == b.query_y).float().mean().item()
    assert 0.35 < accuracy < 0.75, accuracy
