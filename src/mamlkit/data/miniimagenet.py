"""mini-ImageNet (Vinyals et al. 2016) with the class split of Ravi & Larochelle (2017).

100 ImageNet classes of 600 images each: 64 "train", 16 "val" and 20 "test" classes. It is read
from its standard on-disk layout, which mamlkit cannot download (ImageNet's terms of use)::

    <root>/miniimagenet/images/n0153282900000005.jpg ...
    <root>/miniimagenet/train.csv, val.csv, test.csv      # header "filename,label"

Each split's classes are its CSV's labels in sorted order; a class's images are its filenames in
sorted order. Images are converted to RGB, resized to ``image_size`` (84) with Lanczos filtering
and served by :meth:`MiniImageNet.get` as float32 ``[n, 3, H, W]`` in [0, 1] (or normalised with
the ImageNet mean and standard deviation). Decoded uint8 images are cached per split in an ``.npy``
file (memory-mapped when loaded) keyed by the CSV's SHA-256, the listed files' names, sizes and
modification times, the image size and :data:`FORMAT_VERSION`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mamlkit.data.images import ImageFileError, ImageFormat
from mamlkit.data.storage import (
    DATA_ENV,
    cache_key,
    cached,
    check_split,
    image_rows,
    resolve_cache_dir,
    resolve_data_root,
    unreadable,
)
from mamlkit.io import atomic_write, atomic_write_json
from mamlkit.progress import progress_bar

#: Bump when the decoded representation changes, so stale cache files are not reused.
FORMAT_VERSION = 1

FOLDER = "miniimagenet"
SPLITS = ("train", "val", "test")
HEADER = ["filename", "label"]
#: Classes per split and images per class of the Ravi & Larochelle split (not enforced).
STANDARD_CLASSES = {"train": 64, "val": 16, "test": 20}
STANDARD_IMAGES_PER_CLASS = 600
#: ImageNet channel statistics, used when ``normalize=True``.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

HOW_TO_GET = (
    "mamlkit cannot download mini-ImageNet (ImageNet's terms of use): get the Ravi & Larochelle "
    "split CSVs (train.csv, val.csv, test.csv from github.com/twitter/meta-learning-lstm, "
    "data/miniImagenet/) and the matching images/ folder (made from the ILSVRC-2012 training set, "
    "e.g. with github.com/yaoyao-liu/mini-imagenet-tools), and put them in "
    "<root>/miniimagenet/; see docs/data.md"
)


class MiniImageNetError(ValueError):
    """A mini-ImageNet folder, CSV or image that cannot be used; the message names the file."""


def image_format(image_size: int = 84, normalize: bool = False) -> ImageFormat:
    """How mini-ImageNet turns an image into model input: RGB, Lanczos-resized to
    ``image_size``, in [0, 1] (or normalised with the ImageNet statistics).

    >>> from mamlkit.data.miniimagenet import image_format
    >>> image_format().shape, image_format(normalize=True).mean
    ((3, 84, 84), (0.485, 0.456, 0.406))
    """
    if normalize:
        return ImageFormat(image_size, "rgb", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return ImageFormat(image_size, "rgb")


def locate_folder(root: Path, given: object, download: bool) -> Path:
    """The folder holding ``images/`` and the CSVs: ``root/miniimagenet``, or ``root`` itself."""
    source = "the root argument" if given is not None else f"${DATA_ENV} or the default root"
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(
            f"the data root {root} (from {source}) is a file, not a folder; pass the folder that "
            f"holds miniimagenet/ (--data-root / ${DATA_ENV})"
        )
    for folder in (root / FOLDER, root):
        if (folder / "images").is_dir():
            return folder
    asked = " (download was requested, but it cannot be downloaded)" if download else ""
    raise FileNotFoundError(
        f"mini-ImageNet not found: no folder {root / FOLDER / 'images'} (data root {root}, from "
        f"{source}){asked}. {HOW_TO_GET}"
    )


def read_split_csv(path: Path) -> list[tuple[str, str]]:
    """``(filename, label)`` rows of one split CSV, checked: header, field count, plain names."""
    if not path.is_file():
        raise FileNotFoundError(f"mini-ImageNet split file not found: {path}. {HOW_TO_GET}")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MiniImageNetError(f"cannot read {path} ({type(e).__name__}: {e})") from e
    header = [field.strip() for field in lines[0]] if lines else []
    if header != HEADER:
        raise MiniImageNetError(
            f"{path} must start with the header line 'filename,label', found "
            f"{','.join(header) or 'an empty file'!r}; use the Ravi & Larochelle split CSVs"
        )
    rows: list[tuple[str, str]] = []
    for number, fields in enumerate(lines[1:], start=2):
        if not fields:
            continue
        fields = [field.strip() for field in fields]
        if len(fields) != 2 or not all(fields):
            raise MiniImageNetError(
                f"{path} line {number}: expected 'filename,label', got {','.join(fields)!r}"
            )
        name = fields[0]
        if name in (".", "..") or "/" in name or "\\" in name:
            raise MiniImageNetError(
                f"{path} line {number}: {name!r} is not a plain file name inside images/"
            )
        rows.append((name, fields[1]))
    if not rows:
        raise MiniImageNetError(f"{path} lists no images; use the Ravi & Larochelle split CSVs")
    seen: set[str] = set()
    for name, _ in rows:
        if name in seen:
            raise MiniImageNetError(f"{path} lists {name} more than once; fix or replace the CSV")
        seen.add(name)
    return rows


def _group(rows: list[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
    """Sorted class labels and, per class, its sorted file names."""
    by_label: dict[str, list[str]] = {}
    for name, label in rows:
        by_label.setdefault(label, []).append(name)
    labels = sorted(by_label)
    return labels, [sorted(by_label[label]) for label in labels]


def _check_disjoint(folder: Path, split: str, labels: list[str]) -> None:
    """No class of ``split`` may appear in another split's CSV (where that CSV exists)."""
    mine = set(labels)
    for other in SPLITS:
        path = folder / f"{other}.csv"
        if other == split or not path.is_file():
            continue
        shared = mine.intersection(label for _, label in read_split_csv(path))
        if shared:
            raise MiniImageNetError(
                f"{folder / f'{split}.csv'} and {path} share {len(shared)} classes (e.g. "
                f"{min(shared)}); the splits must have disjoint classes"
            )


def _stat_files(images: Path, names: list[str], csv_path: Path) -> list[tuple[str, int, int]]:
    """``(name, size, mtime_ns)`` of every listed image; missing ones are one clear error."""
    stats, missing = [], []
    for name in names:
        try:
            st = (images / name).stat()
        except FileNotFoundError:
            missing.append(name)
            continue
        stats.append((name, st.st_size, st.st_mtime_ns))
    if missing:
        raise MiniImageNetError(
            f"{len(missing)} image(s) listed in {csv_path} are missing from {images}, e.g. "
            f"{images / missing[0]}; copy the complete images/ folder there"
        )
    return stats


class MiniImageNet:
    """One split of mini-ImageNet as few-shot classes, served as float32 by :meth:`get`.

    Args:
        root: data root holding ``miniimagenet/images/`` and ``miniimagenet/<split>.csv``
            (default ``$MAMLKIT_DATA``, else ``~/.cache/mamlkit``); the ``miniimagenet`` folder
            itself also works.
        split: "train", "val" or "test".
        image_size: side of the square images after resizing (84 in the literature).
        normalize: subtract the ImageNet mean and divide by its standard deviation per channel.
        download: accepted for the common dataset interface; mini-ImageNet cannot be downloaded,
            so a missing folder is an error with instructions either way.
        cache_dir: where decoded images are cached (default ``$MAMLKIT_CACHE``, else
            ``~/.cache/mamlkit/decoded``).
        progress: show a progress bar while decoding.

    The data must be on disk (see the module docstring), so the example is not run as a doctest:

    >>> from mamlkit.data import MiniImageNet
    >>> test = MiniImageNet("~/data", split="test")  # doctest: +SKIP
    >>> test.num_classes, test.image_shape, test.is_standard  # doctest: +SKIP
    (20, (3, 84, 84), True)
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        image_size: int = 84,
        normalize: bool = False,
        download: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = False,
    ) -> None:
        self.split = check_split("mini-ImageNet", split, SPLITS)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        self.image_size = image_size
        self.normalize = bool(normalize)
        #: How the images were decoded (and how new images are read to match them).
        self.image_format = image_format(image_size, self.normalize)
        self.root = resolve_data_root(root)
        try:
            self.folder = locate_folder(self.root, root, download)
            self.csv_path = self.folder / f"{split}.csv"
            rows = read_split_csv(self.csv_path)
            self.class_names, files = _group(rows)
            _check_disjoint(self.folder, split, self.class_names)
            self.filenames: list[list[str]] = files
            names = [name for group in files for name in group]
            stats = _stat_files(self.folder / "images", names, self.csv_path)
            self.csv_sha256 = hashlib.sha256(self.csv_path.read_bytes()).hexdigest()
            images, self.cache_path, self.from_cache = _load_decoded(
                self.folder / "images",
                names,
                stats,
                self.csv_sha256,
                split,
                image_size,
                resolve_cache_dir(cache_dir),
                progress,
            )
        except PermissionError as error:
            cache = resolve_cache_dir(cache_dir)
            raise unreadable(error, "mini-ImageNet", self.root, cache) from None
        self._images = images  # uint8 [images, 3, S, S], possibly memory-mapped
        counts = np.array([len(group) for group in files], dtype=np.int64)
        self.num_classes: int = len(files)
        self.image_shape: tuple[int, int, int] = (3, image_size, image_size)
        self.samples_per_class: np.ndarray = counts
        self.samples_per_class.flags.writeable = False

    @property
    def description(self) -> str:
        """How error messages name this dataset, e.g. "the mini-ImageNet 'test' split"."""
        return f"the mini-ImageNet {self.split!r} split"

    @property
    def is_standard(self) -> bool:
        """Whether the split has the Ravi & Larochelle sizes (e.g. 64 classes of 600 images)."""
        return self.num_classes == STANDARD_CLASSES[self.split] and bool(
            np.all(self.samples_per_class == STANDARD_IMAGES_PER_CLASS)
        )

    def __repr__(self) -> str:
        return (
            f"MiniImageNet(split={self.split!r}, classes={self.num_classes}, "
            f"images={int(self.samples_per_class.sum())}, image_size={self.image_size}, "
            f"normalize={self.normalize})"
        )

    def get(self, class_indices: Any, sample_indices: Any) -> torch.Tensor:
        """Images ``sample_indices[i]`` of classes ``class_indices[i]`` as float32 [n, 3, H, W].

        Both arguments are 1-D integer sequences of equal length. Pixels are in [0, 1], or
        normalised with the ImageNet statistics when the dataset was built with ``normalize``.
        """
        rows = image_rows(
            class_indices,
            sample_indices,
            self.samples_per_class,
            self.description,
            self.class_names,
        )
        return self.image_format.to_tensor(np.ascontiguousarray(self._images[rows]))


def _cache_meta(
    stats: list[tuple[str, int, int]], csv_sha256: str, split: str, image_size: int
) -> dict[str, Any]:
    listing = hashlib.sha256("\n".join(f"{n} {s} {t}" for n, s, t in stats).encode()).hexdigest()
    return {
        "format": FORMAT_VERSION,
        "split": split,
        "image_size": image_size,
        "csv_sha256": csv_sha256,
        "files_sha256": listing,
        "images": len(stats),
    }


def _load_decoded(
    images_dir: Path,
    names: list[str],
    stats: list[tuple[str, int, int]],
    csv_sha256: str,
    split: str,
    image_size: int,
    cache_dir: Path,
    progress: bool,
) -> tuple[np.ndarray, Path | None, bool]:
    """Every listed image as uint8 ``[n, 3, S, S]``: from the cache if valid, else decoded.

    Returns ``(images, cache file or None when caching failed, whether it came from the cache)``.
    """
    meta = _cache_meta(stats, csv_sha256, split, image_size)
    return cached(
        cache_dir / f"miniimagenet-{split}-{image_size}px-{cache_key(meta)}.npy",
        dataset="mini-ImageNet",
        read=lambda path: _read_cache(path, meta),
        decode=lambda: _decode(images_dir, names, image_size, progress),
        write=lambda path, images: _write_cache(path, images, meta),
        redo="decoding the images again",
    )


def _read_cache(array_file: Path, meta: dict[str, Any]) -> np.ndarray:
    """The memory-mapped cached images; an error if they do not match ``meta``."""
    stored = json.loads(array_file.with_suffix(".json").read_text(encoding="utf-8"))
    images = np.load(array_file, mmap_mode="r", allow_pickle=False)
    size = meta["image_size"]
    if stored != meta:
        raise ValueError("its metadata does not match the images")
    if images.dtype != np.uint8 or images.shape != (meta["images"], 3, size, size):
        raise ValueError(f"unexpected array {images.dtype} {images.shape}")
    return images


def _write_cache(array_file: Path, images: np.ndarray, meta: dict[str, Any]) -> None:
    """Write the array (streamed), then its metadata, each atomically."""
    atomic_write(array_file, lambda handle: np.save(handle, images, allow_pickle=False))
    atomic_write_json(array_file.with_suffix(".json"), meta)


def _decode(images_dir: Path, names: list[str], image_size: int, progress: bool) -> np.ndarray:
    """Decode, convert to RGB and Lanczos-resize every image (uint8 ``[n, 3, S, S]``)."""
    out = np.empty((len(names), 3, image_size, image_size), dtype=np.uint8)
    decode = image_format(image_size)
    for i, name in enumerate(progress_bar(names, enabled=progress, desc="decode", unit="image")):
        path = images_dir / name
        try:
            out[i] = decode.read(path)
        except ImageFileError as e:
            cause = e.__cause__
            raise MiniImageNetError(
                f"cannot decode {path} ({type(cause).__name__}: {cause}); the file is corrupt or "
                f"not an image: replace it with the original"
            ) from cause
    return out
