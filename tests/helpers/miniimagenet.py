"""A tiny mini-ImageNet in the standard layout: ``miniimagenet/images/*.jpg`` + split CSVs.

Every image is one solid colour that encodes its (split, class, sample), so tests can check which
image the loader returned after JPEG round-trips and resizing.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
#: Varying original sizes (width, height), cycled over the images.
SIZES = [(20, 30), (84, 84), (50, 40), (97, 61)]


def label_of(split: str, c: int) -> str:
    """The wnid-like label of class ``c`` of ``split`` (sorted order = class index order)."""
    return f"n{SPLIT_INDEX[split]}{c:07d}"


def colour(split: str, c: int, s: int) -> tuple[int, int, int]:
    """The solid RGB colour of sample ``s`` of class ``c`` of ``split``."""
    return (20 + 40 * c, 20 + 30 * s, 40 + 80 * SPLIT_INDEX[split])


def make_miniimagenet(
    root: Path, classes: int = 5, images: int | list[int] = 4, csv_order: str = "reversed"
) -> Path:
    """Write the fixture under ``root/miniimagenet`` and return that folder.

    ``images`` is per class (an int or one count per class). Rows are written in reverse order so
    tests see that the loader sorts them.
    """
    folder = root / "miniimagenet"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    counts = [images] * classes if isinstance(images, int) else images
    k = 0
    for split in SPLIT_INDEX:
        rows = []
        for c in range(classes):
            label = label_of(split, c)
            for s in range(counts[c]):
                name = f"{label}{s + 1:08d}.jpg"
                size = SIZES[k % len(SIZES)]
                k += 1
                Image.new("RGB", size, colour(split, c, s)).save(
                    folder / "images" / name, quality=95
                )
                rows.append(f"{name},{label}")
        if csv_order == "reversed":
            rows.reverse()
        (folder / f"{split}.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")
    return folder
