"""Tiny folders of class folders of images, as users give them: mixed sizes, PNG and JPEG.

Every image is one solid colour that encodes its class and sample, so tests can check which image
a loader returned after resizing (PNG exactly; JPEG within a few levels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

#: Original sizes (width, height), cycled over the images of a class.
SIZES = [(20, 30), (50, 40), (97, 61), (33, 33), (16, 70)]


def colour(c: int, s: int) -> tuple[int, int, int]:
    """The solid RGB colour of sample ``s`` of class ``c`` (distinct for c < 10, s < 8)."""
    return (20 + 23 * c, 15 + 30 * s, 200 - 15 * c)


def file_name(s: int) -> str:
    """Sample ``s``'s file name: PNG for even samples, JPEG for odd ones (name order = s)."""
    return f"{s:03d}.png" if s % 2 == 0 else f"{s:03d}.jpg"


def write_image(path: Path, size: tuple[int, int], rgb: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, quality=95)
    return path


def make_class_folders(
    folder: Path, classes: int | Sequence[str] = 5, images: int | Sequence[int] = 4, first: int = 0
) -> Path:
    """``folder/<class>/<sample>.png|jpg`` and return ``folder``. ``classes``: how many (named
    ``class00``, ``class01``, ... from ``first``) or their names; ``images``: per class (one count,
    or one per class). Class ``c`` (its position, plus ``first``) has the colours
    ``colour(c, s)``."""
    if isinstance(classes, int):
        classes = [f"class{first + c:02d}" for c in range(classes)]
    names = list(classes)
    counts = [images] * len(names) if isinstance(images, int) else list(images)
    k = 0
    for c, (name, count) in enumerate(zip(names, counts, strict=True)):
        for s in range(count):
            write_image(folder / name / file_name(s), SIZES[k % len(SIZES)], colour(first + c, s))
            k += 1
    return folder
