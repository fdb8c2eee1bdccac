"""The CIFAR-FS, FC100, tieredImageNet and CUB-200-2011 loaders on small trees in the released
layouts (ragged classes), their errors, and the decoded-split cache."""

import os
import pickle
import shutil
from dataclasses import replace

import numpy as np
import pytest

from distmeta.bench.synthetic import CIFAR100, FINE
from distmeta.errors import UserError
from distmeta.tasks import load_cifar_fs, load_cub, load_fc100, load_tiered
from distmeta.tasks.datasets import cached, cifar_sources, splits
from tests.trees import cifar100_tree, cifar_counts, cub_tree, tiered_tree


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return cifar100_tree(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="module")
def tiered(tmp_path_factory):
    return tiered_tree(tmp_path_factory.mktemp("tiered"))


def test_cifar_fs_has_the_bertinetto_split_with_every_image_of_each_class(cifar):
    loaded = {s: load_cifar_fs(cifar, s) for s in splits.SPLITS}
    assert [loaded[s].num_classes for s in splits.SPLITS] == [64, 16, 20]
    assert set().union(*(set(d.names) for d in loaded.values())) == set(FINE)
    test = loaded["test"]
    assert test.names[:3] == ("whale", "poppy", "rose") and test.shape == (3, 32, 32)
    for c, name in enumerate(test.names):
        fine = FINE.index(name)
        assert test.counts[c] == sum(cifar_counts(fine)), "the train and the test file's images, no padding"
        rows = test.images[test.starts[c] : test.starts[c] + test.counts[c]]
        assert (rows[:, 0] == fine).all(), "red plane: the class (rows are [N, 3, 32, 32] from CIFAR's planes)"
        from_test = (rows[:, 1, 0, 0] > 100).tolist()
        assert from_test == sorted(from_test) and from_test[-1], "the train file's images first, then the test file's"


def test_fc100_splits_by_superclass(cifar):
    loaded = {s: load_fc100(cifar, s) for s in splits.SPLITS}
    assert [loaded[s].num_classes for s in splits.SPLITS] == [60, 20, 20]
    for s, data in loaded.items():
        supers = set(splits.names("fc100", s))
        assert {c for c, names in CIFAR100.items() if set(names) & set(data.names)} == supers


def test_tiered_imagenet_reads_png_pickles_with_ragged_classes(tiered):
    train = load_tiered(tiered, "train")
    assert train.num_classes == 6 and train.counts.tolist() == [4, 5, 6, 7, 8, 9]
    assert train.names[0] == "n00002000" and train.shape == (3, 84, 84)
    reds = [int(np.median(train.images[train.starts[c] : train.starts[c] + train.counts[c], 0])) for c in range(6)]
    assert reds == [30 * c % 255 for c in range(6)], "each class's images are its own (the label pickle's order)"
    small = load_tiered(tiered, "val", image_size=32)
    assert small.shape == (3, 32, 32) and small.num_classes == 3


def test_cub_uses_chen_et_als_class_split_and_resizes_every_photo(tmp_path):
    root = cub_tree(tmp_path)
    loaded = {s: load_cub(root, s) for s in splits.SPLITS}
    assert loaded["train"].names == ("001.Bird_A", "003.Bird_C", "005.Bird_E", "007.Bird_G")
    assert loaded["val"].names == ("002.Bird_B", "006.Bird_F") and loaded["test"].names == ("004.Bird_D", "008.Bird_H")
    assert loaded["train"].counts.tolist() == [5, 7, 6, 5] and loaded["train"].shape == (3, 84, 84)


def test_missing_and_corrupted_parts_are_clear_errors(cifar, tiered, tmp_path):
    with pytest.raises(UserError, match="(?s)CIFAR-100 not found under .*no train, test, meta.*cifar-100-python/train"):
        load_cifar_fs(tmp_path, "train")
    with pytest.raises(UserError, match="(?s)tieredImageNet not found .*no train_images_png.pkl, train_labels.pkl"):
        load_tiered(tmp_path, "train")
    with pytest.raises(UserError, match="(?s)CUB-200-2011 not found .*<root>/images/<NNN.Class_name>/\\*.jpg"):
        load_cub(tmp_path, "train")

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("val_images_png.pkl", "val_labels.pkl"):
        (broken / name).write_bytes((tiered / name).read_bytes())
    data = (tiered / "val_images_png.pkl").read_bytes()
    (broken / "val_images_png.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="val_images_png.pkl is not a readable pickle"):
        load_tiered(broken, "val")
    images = pickle.loads(data)
    images[3] = images[3][:40]  # a truncated PNG
    (broken / "val_images_png.pkl").write_bytes(pickle.dumps(images, protocol=2))
    with pytest.raises(UserError, match="tieredImageNet: cannot read an encoded image"):
        load_tiered(broken, "val")
    (broken / "val_labels.pkl").write_bytes(pickle.dumps(os.getcwd))  # a pickle that would call code
    with pytest.raises(UserError, match="refusing to load posix.getcwd"):
        load_tiered(broken, "val")


def _cached(root, cache, split="test", log=None):
    return cached(
        lambda allocate: load_cifar_fs(root, split, allocate=allocate), dataset="cifar_fs", split=split, settings={"size": 32},
        root=root, sources=cifar_sources(root), cache_dir=cache, log=log or (lambda s: None),
    )  # fmt: skip


def test_the_cache_decodes_once_maps_later_and_notices_a_changed_source(tmp_path):
    root, cache = cifar100_tree(tmp_path / "cifar"), tmp_path / "cache"
    logged = []
    first = _cached(root, cache, log=logged.append)
    assert len(logged) == 1 and "decoding cifar_fs test" in logged[0]
    plain = load_cifar_fs(root, "test")
    second = _cached(root, cache, log=logged.append)
    assert len(logged) == 1, "the second start maps the cache"
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    for a in (first, second):
        assert a.names == plain.names and np.array_equal(a.counts, plain.counts)
        assert np.array_equal(np.asarray(a.images), plain.images)
    assert sorted(p.name for p in cache.iterdir()) == ["cifar_fs-test-size32", "cifar_fs-test-size32.lock"]
    assert sorted(p.name for p in (cache / "cifar_fs-test-size32").iterdir()) == ["images.npy", "index.json", "manifest.json"]

    meta = root / "cifar-100-python" / "meta"
    st = meta.stat()
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the same bytes, touched
    _cached(root, cache, log=logged.append)
    assert len(logged) == 2, "a changed source decodes again"
    _cached(root, cache, log=logged.append)
    assert len(logged) == 2
    assert not [p for p in cache.iterdir() if ".tmp" in p.name], "no half-written entry is left"


def test_an_unwritable_cache_folder_decodes_without_a_cache(tmp_path, caplog):
    from distmeta.recipe import families
    from distmeta.tasks import FamilyRequest

    root = cifar100_tree(tmp_path / "cifar")
    (tmp_path / "a_file").write_text("")
    request = FamilyRequest("cifar_fs", "cifar_fs", 1, 1, 5, root=str(root), image_size=32, channels=3,
                            cache_dir=str(tmp_path / "a_file" / "cache"))  # fmt: skip
    images = families.load(request, "val")
    assert images.num_classes == 16 and not isinstance(images.images, np.memmap)
    assert "cannot write the dataset cache" in caplog.text


def test_a_node_without_the_cache_file_decodes_its_own_copy(tmp_path):
    """A cache entry travels to actors as its path; on a node whose disk lacks it (every node holds
    its own copy of the dataset, the driver decoded on another) the actor decodes it there, once."""
    from distmeta.recipe import families
    from distmeta.tasks import FamilyRequest

    root, cache = cifar100_tree(tmp_path / "cifar"), tmp_path / "cache"
    request = FamilyRequest("cifar_fs", "cifar_fs", 1, 1, 5, root=str(root), image_size=32, channels=3, cache_dir=str(cache))
    images = families.load(request, "train").partition(1, 2)
    assert isinstance(images.images, np.memmap)
    sent = pickle.dumps(images)
    assert len(sent) < images.images.nbytes // 10, "the path travels, not the pixels"

    shutil.rmtree(cache)  # what another node's disk looks like
    here = pickle.loads(sent)
    assert isinstance(here.images, np.memmap) and here.names == images.names
    assert np.array_equal(np.asarray(here.images), np.asarray(images.images))
    assert (cache / "cifar_fs-train-size32" / "images.npy").exists(), "decoded into this node's cache"

    shutil.rmtree(cache)
    bare = pickle.dumps(replace(images, rebuild=None))
    with pytest.raises(UserError, match="cannot be opened here .* tasks.cache_dir must be a path every node sees"):
        pickle.loads(bare)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(root / "cifar-100-python")  # nor is the dataset on this node
    with pytest.raises(UserError, match="is not on this node .* decoding the dataset here failed: CIFAR-100 not found"):
        pickle.loads(sent)
