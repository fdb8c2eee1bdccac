"""The Omniglot and mini-ImageNet loaders on small trees in the real layouts."""

import numpy as np
import pytest

from distmeta.errors import UserError
from distmeta.tasks import load_miniimagenet, load_omniglot
from tests.trees import miniimagenet_tree, omniglot_tree

SPLIT = [10, 3, 5]  # 18 characters in the tree


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory):
    return omniglot_tree(tmp_path_factory.mktemp("omniglot"))


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return miniimagenet_tree(tmp_path_factory.mktemp("mini"))


def test_omniglot_splits_are_disjoint_resized_and_inked(omniglot):
    splits = {s: load_omniglot(omniglot, s, class_split=SPLIT) for s in ("train", "val", "test")}
    assert [splits[s].num_classes for s in ("train", "val", "test")] == SPLIT
    names = [set(splits[s].names) for s in splits]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert len(set().union(*names)) == 18 and all("/character" in n for n in splits["train"].names)
    px = splits["train"].pixels
    assert px.shape == (10, 6, 1, 28, 28) and px.dtype == np.uint8
    # white paper is 0 and ink is bright after inversion: most pixels are background
    assert np.median(px) == 0 and px.max() > 200
    again = load_omniglot(omniglot, "train", class_split=SPLIT)
    assert again.names == splits["train"].names and np.array_equal(again.pixels, px)


def test_omniglot_errors_name_the_layout_and_the_split(omniglot, tmp_path):
    with pytest.raises(UserError, match="images_background/<alphabet>/<character>/\\*.png"):
        load_omniglot(tmp_path / "nowhere", "train")
    with pytest.raises(UserError, match="has 18 characters; tasks.class_split=\\[1100, 100, 423\\]"):
        load_omniglot(omniglot, "train")


def test_miniimagenet_classes_follow_the_csv_files(mini):
    train = load_miniimagenet(mini, "train")
    assert train.pixels.shape == (6, 8, 3, 84, 84) and train.pixels.dtype == np.uint8
    assert list(train.names) == sorted(train.names) and all(n.startswith("n0") for n in train.names)
    test = load_miniimagenet(mini, "test")
    assert test.num_classes == 3 and not set(test.names) & set(train.names)
    # each class has its own colour: class means differ, images within a class agree
    means = train.pixels.reshape(6, 8, 3, -1).max(-1).mean(1)
    assert len({tuple(m.round()) for m in means}) == 6


def test_miniimagenet_errors(mini, tmp_path):
    with pytest.raises(UserError, match="(?s)\\(no train.csv, images/\\); expected layout .*<root>/train.csv, <root>/val.csv"):
        load_miniimagenet(tmp_path, "train")
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "train.csv").write_text("file,class\na.jpg,n1\n")
    with pytest.raises(UserError, match="header 'filename,label'"):
        load_miniimagenet(bad, "train")
    (bad / "train.csv").write_text("filename,label\nmissing.jpg,n1\n")
    with pytest.raises(UserError, match="cannot read image .*missing.jpg"):
        load_miniimagenet(bad, "train")
