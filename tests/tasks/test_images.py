"""Ragged class images: classes with different numbers of images, held without padding, sampled
uniformly within each class; class subsets share a memory map and copy in-memory images."""

import numpy as np
import pytest
import torch

from distmeta.tasks import ClassImages, EpisodeFamily

COUNTS = (4, 9, 6)


def _ragged() -> ClassImages:
    """Image ``j`` of class ``c`` is the constant 16 * c + j, so a pixel names its image."""
    values = [16 * c + j for c, n in enumerate(COUNTS) for j in range(n)]
    images = np.repeat(np.array(values, dtype=np.uint8), 2 * 4 * 4).reshape(-1, 2, 4, 4)
    return ClassImages.ragged(images, COUNTS, ("a", "b", "c"))


def _identities(batch) -> torch.Tensor:
    """Each image's class * 16 + index, from its first pixel."""
    return (batch * 255).round().long()[..., 0, 0, 0]


def test_ragged_classes_are_sampled_uniformly_within_each_class():
    data = _ragged()
    assert data.examples == 4 and data.num_classes == 3 and data.shape == (2, 4, 4)
    family = EpisodeFamily("r", ways=3, shots=1, query=2).with_data(data)
    seen = {c: np.zeros(n) for c, n in enumerate(COUNTS)}
    for step in range(400):
        t = family.sample(0, 0, step, [0])
        ids = torch.cat([_identities(t.support_x)[0].view(3, 1), _identities(t.query_x)[0].view(3, 2)], 1)
        for label in range(3):
            row = ids[label]
            cls = int(row[0]) // 16
            assert (row // 16 == cls).all() and len(set(row.tolist())) == 3, "k + q distinct images of one class"
            seen[cls][(row % 16).numpy()] += 1
    for c, n in enumerate(COUNTS):
        expected = 400 * 3 / n  # every class is in every 3-way episode; 3 of its n images each time
        assert seen[c].min() > 0.7 * expected and seen[c].max() < 1.3 * expected, (c, seen[c])
    with pytest.raises(ValueError, match="exceeds the 4 images per class"):
        EpisodeFamily("r", ways=3, shots=2, query=3).with_data(data).check()


def test_a_grid_samples_the_same_episodes_as_its_ragged_form():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (5, 6, 1, 4, 4), dtype=np.uint8)
    grid = ClassImages.grid(pixels, tuple("vwxyz"))
    ragged = ClassImages.ragged(pixels.reshape(30, 1, 4, 4), [6] * 5, tuple("vwxyz"))
    assert np.array_equal(grid.pixels, pixels)
    a = EpisodeFamily("g", ways=3, shots=2, query=1).with_data(grid).sample(1, 0, 3, range(4))
    b = EpisodeFamily("g", ways=3, shots=2, query=1).with_data(ragged).sample(1, 0, 3, range(4))
    for x, y in zip(a.tensors(), b.tensors()):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="different numbers of images"):
        _ = _ragged().pixels


def test_partitions_copy_images_in_memory_and_share_a_memory_map(tmp_path):
    data = _ragged()
    part = data.partition(1, 2)  # class b only
    assert part.names == ("b",) and part.counts.tolist() == [9] and len(part.images) == 9
    assert (part.images[:, 0, 0, 0] // 16 == 1).all()

    path = tmp_path / "images.npy"
    np.save(path, data.images)
    mapped = ClassImages.ragged(np.load(path, mmap_mode="r"), COUNTS, data.names)
    shared = mapped.partition(0, 2)  # a and c
    assert shared.images is mapped.images and shared.names == ("a", "c")
    t = EpisodeFamily("m", ways=2, shots=1, query=1).with_data(shared).sample(0, 0, 0, range(20))
    assert set((_identities(t.support_x) // 16).unique().tolist()) == {0, 2}
