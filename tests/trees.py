"""Small dataset trees in the real released layouts of Omniglot, mini-ImageNet, CIFAR-100 (CIFAR-FS,
FC100), tieredImageNet and CUB-200-2011, for loader and
end-to-end tests. Each class's images share a class-specific shape, so the classes are learnable."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw


def _shape(draw: ImageDraw.ImageDraw, rng: random.Random, cls_rng: random.Random, size: int, fill, width: int) -> None:
    points = [(cls_rng.uniform(0.15, 0.85) * size, cls_rng.uniform(0.15, 0.85) * size) for _ in range(4)]
    jittered = [(x + rng.uniform(-0.04, 0.04) * size, y + rng.uniform(-0.04, 0.04) * size) for x, y in points]
    draw.line(jittered, fill=fill, width=width)


def omniglot_tree(
    root: Path, alphabets=(("Alpha", 4), ("Beta", 4), ("Gamma", 3)), evaluation=(("Delta", 4), ("Epsilon", 3)), drawings: int = 6
) -> Path:
    """``images_background/`` and ``images_evaluation/`` of ``<alphabet>/characterNN/*.png``:
    105x105 grayscale PNGs, black ink on white, as in the Omniglot release."""
    for folder, groups in (("images_background", alphabets), ("images_evaluation", evaluation)):
        for alphabet, count in groups:
            for c in range(1, count + 1):
                path = root / folder / alphabet / f"character{c:02d}"
                path.mkdir(parents=True)
                cls_rng = random.Random(f"{alphabet}{c}")
                for d in range(drawings):
                    im = Image.new("L", (105, 105), 255)
                    _shape(ImageDraw.Draw(im), random.Random(f"{alphabet}{c}{d}"), random.Random(cls_rng.random()), 105, 0, 6)
                    im.save(path / f"{c:04d}_{d + 1:02d}.png")
    return root


def miniimagenet_tree(root: Path, classes=(("train", 6), ("val", 3), ("test", 3)), per_class: int = 8, size=(100, 90)) -> Path:
    """``train.csv``, ``val.csv``, ``test.csv`` (``filename,label``) and ``images/``: RGB JPEGs
    (larger than 84x84 here, so the loader's resizing is exercised)."""
    (root / "images").mkdir(parents=True)
    wnid = 1000
    for split, count in classes:
        rows = ["filename,label"]
        for _ in range(count):
            wnid += 1
            label = f"n0{wnid:07d}"
            rng = random.Random(label)
            color = tuple(rng.randrange(60, 255) for _ in range(3))
            for i in range(per_class):
                name = f"{label}{i + 1:08d}.jpg"
                im = Image.new("RGB", size, (20, 20, 20))
                _shape(ImageDraw.Draw(im), random.Random(name), random.Random(label), min(size), color, 8)
                im.save(root / "images" / name)
                rows.append(f"{name},{label}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def cifar_counts(fine: int) -> tuple[int, int]:
    """Images of fine class ``fine`` in the tree's train and test files (ragged: 3-5 and 1-2)."""
    return 3 + fine % 3, 1 + fine % 2


def cifar100_tree(root: Path) -> Path:
    """CIFAR-100's python release (written by the bench's synthetic writer, in the release's
    layout) where image ``i`` of fine class ``c`` has red = c, green = 10 * (i + 1) (+ 100 in the
    test file) and blue = a class-specific pattern."""
    import numpy as np

    from distmeta.bench.synthetic import write_cifar100

    def image(c: int, part: int, i: int) -> np.ndarray:
        pattern = np.random.default_rng(c).integers(0, 255, (32, 32))
        return np.stack([np.full((32, 32), c), np.full((32, 32), 10 * (i + 1) + 100 * part), pattern]).astype(np.uint8)

    return write_cifar100(root, cifar_counts, image)


def tiered_tree(root: Path, classes=(("train", 6), ("val", 3), ("test", 3)), size: int = 84) -> Path:
    """``<split>_images_png.pkl`` (a list of uint8 arrays, each a PNG file's bytes, as OpenCV's
    ``imencode`` gives them) and ``<split>_labels.pkl`` (``label_specific``, ``label_general``
    and their names); class ``c`` of a split holds 4 + c images, in an interleaved order."""
    import io
    import pickle

    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    wnid = 2000
    for split, count in classes:
        labels = [c for c in range(count) for _ in range(4 + c)]
        labels = [labels[i] for i in np.random.default_rng(count).permutation(len(labels))]
        names = [f"n0{wnid + c:07d}" for c in range(count)]
        wnid += count
        images = []
        for i, c in enumerate(labels):
            im = Image.new("RGB", (size, size), (30 * c % 255, 20, 20))
            _shape(ImageDraw.Draw(im), random.Random(f"{split}{i}"), random.Random(names[c]), size, (250, 250, 250), 6)
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            images.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        general = [c // 2 for c in labels]
        info = {b"label_specific": np.array(labels), b"label_general": np.array(general),
                b"label_specific_str": names, b"label_general_str": [f"g{g}" for g in range(max(general) + 1)]}  # fmt: skip
        (root / f"{split}_images_png.pkl").write_bytes(pickle.dumps(images, protocol=2))
        (root / f"{split}_labels.pkl").write_bytes(pickle.dumps(info, protocol=2))
    return root


def cub_tree(root: Path, classes: int = 8) -> Path:
    """``CUB_200_2011/images/NNN.Name/*.jpg``: photos of different sizes, class ``c`` holding 5 + c % 3."""
    for c in range(classes):
        folder = root / "CUB_200_2011" / "images" / f"{c + 1:03d}.Bird_{chr(65 + c)}"
        folder.mkdir(parents=True)
        color = tuple(random.Random(c).randrange(60, 255) for _ in range(3))
        for i in range(5 + c % 3):
            size = (120 + 7 * i, 90 + 5 * c)
            im = Image.new("RGB", size, (20, 20, 20))
            _shape(ImageDraw.Draw(im), random.Random(f"{c}.{i}"), random.Random(c), min(size), color, 8)
            im.save(folder / f"Bird_{chr(65 + c)}_{i:04d}.jpg")
    return root
