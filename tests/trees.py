"""Small dataset trees in the real on-disk layouts of Omniglot and mini-ImageNet, for loader and
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
