"""Your own images as a few-shot dataset: one sub-folder of image files per class.

The folder ``root`` (``--data-root``) holds either class folders, split automatically, or the
three splits as ``train/``, ``val/`` and ``test/`` folders of class folders::

    root/cat/001.jpg, root/cat/002.png, ..., root/dog/...            # split automatically
    root/train/cat/..., root/val/owl/..., root/test/fox/...           # your own split

* Automatic split: the class folders, sorted by name, are permuted with
  ``numpy.random.default_rng(split_seed)`` (never the global random state) and cut into "val"
  and "test" (:data:`SPLIT_FRACTIONS`: 20% of the classes each, rounded to the nearest) and
  "train" (the rest), so the same folder and ``split_seed`` always give the same split
  (:func:`split_classes`).
* Your own split: each of ``train/``, ``val/``, ``test/`` holds that split's class folders (a
  split never used may be missing, e.g. ``val/`` without ``--validation``); the classes of the
  splits must differ, and ``split_seed`` does not apply.

A class's images are the files of its folder, in name order: any format Pillow reads (PNG, JPEG,
BMP, GIF, TIFF, WebP, ...), any size and colour mode. Hidden files (names starting with ``.``),
``Thumbs.db`` and ``desktop.ini`` are skipped; any other file that is not an image is an error
naming it. Each image is turned upright (EXIF orientation), laid on white where transparent,
converted to RGB or grayscale (``channels``) and resized to ``image_size`` x ``image_size``
(Lanczos; 84 for RGB, 28 for grayscale by default): :func:`image_format`. The images of a split
are decoded once, when the dataset is built, and kept in memory as uint8 (an 84x84 RGB image
takes 21 kB: 5000 of them about 106 MB); :meth:`ImageFolder.get` serves float32 in [0, 1].
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mamlkit.data.images import CHANNELS, ImageFormat
from mamlkit.data.storage import check_split, image_rows
from mamlkit.errors import ConfigError
from mamlkit.progress import progress_bar

SPLITS = ("train", "val", "test")
#: Shares of the classes that the automatic split gives "val" and "test" (rounded to the
#: nearest); "train" gets the rest.
SPLIT_FRACTIONS: dict[str, float] = {"val": 0.2, "test": 0.2}
#: The image side when ``image_size`` is not given, per ``channels``: mini-ImageNet's 84 for RGB,
#: Omniglot's 28 for grayscale.
DEFAULT_IMAGE_SIZE: dict[str, int] = {"rgb": 84, "grayscale": 28}
#: Files skipped besides hidden ones: what file managers leave in folders of pictures.
IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})

LAYOUT_HINT = (
    "one sub-folder of images per class (root/cat/*.jpg, root/dog/*.jpg, ...), or train/, val/ "
    "and test/ folders each holding such class folders"
)


class ImageFolderError(ValueError):
    """A folder of images that cannot be used as a dataset; the message names it and the fix."""


def image_format(image_size: int | None = None, channels: str = "rgb") -> ImageFormat:
    """How the folder dataset turns an image file into model input (see the module docstring).

    >>> from mamlkit.data.folder import image_format
    >>> image_format().shape, image_format(channels="grayscale").shape
    ((3, 84, 84), (1, 28, 28))
    >>> image_format(32, "rgb").image_size
    32
    """
    if channels not in CHANNELS:
        valid = ", ".join(CHANNELS)
        raise ConfigError(f"channels must be one of {valid}, got {channels!r}")
    size = DEFAULT_IMAGE_SIZE[channels] if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"image_size must be a positive integer, got {size!r}")
    return ImageFormat(size, channels, photos=True)


def split_classes(names: Sequence[str], split: str, split_seed: int = 0) -> list[int]:
    """Indices into ``names`` (class folder names) of one split of the automatic split, sorted.

    The names are sorted, permuted with ``numpy.random.default_rng(split_seed)`` and cut into
    "train", "val" and "test" (:data:`SPLIT_FRACTIONS`); the order of ``names`` does not matter.

    >>> from mamlkit.data.folder import split_classes
    >>> names = [f"class{i:02d}" for i in range(10)]
    >>> [len(split_classes(names, s)) for s in ("train", "val", "test")]
    [6, 2, 2]
    >>> test = [names[i] for i in split_classes(names, "test", split_seed=0)]
    >>> shuffled = names[::-1]  # the same classes listed in another order: the same split
    >>> sorted(shuffled[i] for i in split_classes(shuffled, "test", split_seed=0)) == test
    True
    >>> test == [names[i] for i in split_classes(names, "test", split_seed=1)]
    False
    """
    check_split("folder", split, SPLITS)
    order = sorted(range(len(names)), key=lambda i: names[i])
    permuted = np.random.default_rng(split_seed).permutation(len(names))
    sizes = {s: int(len(names) * f + 0.5) for s, f in SPLIT_FRACTIONS.items()}
    sizes = {"train": len(names) - sum(sizes.values()), **sizes}
    start = 0
    for name in SPLITS:
        if name == split:
            return sorted(order[i] for i in permuted[start : start + sizes[name]])
        start += sizes[name]
    raise AssertionError("unreachable")  # pragma: no cover


def _skipped(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in IGNORED_FILES


def subfolders(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder``, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _skipped(p)), key=_name)


def image_files(folder: Path) -> list[Path]:
    """The files of one folder of images, sorted by name (hidden and ignored ones skipped); a
    folder inside it is an error, since its images would be left out unseen."""
    files = []
    for path in sorted(folder.iterdir(), key=_name):
        if _skipped(path):
            continue
        if path.is_dir():
            raise ImageFolderError(
                f"{path} is a folder inside the image folder {folder}; put its images directly "
                f"in {folder} (or in a class folder of their own)"
            )
        files.append(path)
    return files


def _name(path: Path) -> str:
    return path.name


def check_folder(folder: str | os.PathLike[str], what: str) -> Path:
    """``folder`` as a ``Path`` if it is an existing folder; else an error naming it as ``what``
    (e.g. "image folder")."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is a file, not a folder")
    return path


def labelled_images(folder: str | os.PathLike[str], what: str) -> dict[str, list[Path]]:
    """``{class name: its image files}`` of a folder of class folders (e.g. the support images
    of a new task), classes and files sorted by name. ``what`` names the folder in errors: one
    without class folders, with image files outside them, or with an empty class folder.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from mamlkit.data.folder import labelled_images
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name in ["owl/1.png", "owl/2.png", "cat/a.jpg"]:
    ...         path = Path(tmp, name)
    ...         path.parent.mkdir(exist_ok=True)
    ...         _ = path.write_bytes(b"")
    ...     {name: [p.name for p in files] for name, files in labelled_images(tmp, "x").items()}
    {'cat': ['a.jpg'], 'owl': ['1.png', '2.png']}
    """
    root = check_folder(folder, what)
    classes = subfolders(root)
    loose = [p for p in root.iterdir() if not p.is_dir() and not _skipped(p)]
    if not classes:
        found = f" (it holds {len(loose)} files directly)" if loose else ""
        raise ImageFolderError(
            f"the {what} {root} holds no class folders{found}; it needs one sub-folder per "
            f"class, named after the class, holding that class's images"
        )
    if loose:
        raise ImageFolderError(
            f"the {what} {root} holds files outside its class folders (e.g. {loose[0].name}); "
            f"move each into the folder of its class"
        )
    images = {}
    for path in classes:
        images[path.name] = image_files(path)
        if not images[path.name]:
            raise ImageFolderError(
                f"the class folder {path} of the {what} holds no images; give every class at "
                f"least one"
            )
    return images


def query_images(folder: str | os.PathLike[str], what: str) -> tuple[list[Path], list[str] | None]:
    """The image files of a folder of images to classify, and their classes when they are
    sorted into class folders (``None`` for a flat folder); sorted by name."""
    root = check_folder(folder, what)
    if not subfolders(root):
        files = image_files(root)
        if not files:
            raise ImageFolderError(f"the {what} {root} holds no images")
        return files, None
    loose = [p for p in root.iterdir() if not p.is_dir() and not _skipped(p)]
    if loose:
        raise ImageFolderError(
            f"the {what} {root} mixes image files (e.g. {loose[0].name}) with class folders; "
            f"put all images in class folders (to score the predictions) or none"
        )
    by_class = labelled_images(root, what)
    files = [path for paths in by_class.values() for path in paths]
    labels = [name for name, paths in by_class.items() for _ in paths]
    return files, labels


def class_folders(root: Path, split: str, split_seed: int) -> tuple[list[Path], str]:
    """The class folders of ``split`` of the folder dataset in ``root``, and how to name the
    split in messages (its folder, or the automatic split)."""
    folders = subfolders(root)
    given = {p.name: p for p in folders if p.name in SPLITS}
    if given:
        others = [p.name for p in folders if p.name not in SPLITS]
        if others:
            raise ImageFolderError(
                f"{root} mixes split folders ({', '.join(sorted(given))}) with other folders "
                f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); put every class "
                f"folder inside train/, val/ or test/, or remove the split folders to have the "
                f"classes split automatically"
            )
        if split_seed != 0:
            raise ConfigError(
                f"split_seed applies only to an automatic split, but {root} has its own split "
                f"folders ({', '.join(sorted(given))}); leave split_seed at 0"
            )
        if split not in given:
            present = ", ".join(f"{name}/" for name in sorted(given))
            raise ImageFolderError(
                f"{root} has no {split}/ folder (it has {present}); add {root / split} holding "
                f"one sub-folder of images per class"
            )
        classes = subfolders(given[split])
        if not classes:
            raise ImageFolderError(
                f"{given[split]} holds no class folders; put each class's images in a sub-folder "
                f"of it named after the class"
            )
        mine = {p.name for p in classes}
        for other in SPLITS:
            if other == split or other not in given:
                continue
            shared = sorted(mine.intersection(p.name for p in subfolders(given[other])))
            if shared:
                raise ImageFolderError(
                    f"{given[split]} and {given[other]} share {len(shared)} classes (e.g. "
                    f"{shared[0]!r}); the splits must have different classes, since tasks test "
                    f"learning new classes: move or rename them"
                )
        return classes, str(given[split])
    if not folders:
        files = [p for p in root.iterdir() if not _skipped(p)]
        found = f" (it holds {len(files)} files directly)" if files else ""
        raise ImageFolderError(f"{root} holds no class folders{found}; it needs {LAYOUT_HINT}")
    chosen = split_classes([p.name for p in folders], split, split_seed)
    if not chosen:
        shares = ", ".join(f"{s} {100 * f:g}%" for s, f in SPLIT_FRACTIONS.items())
        raise ImageFolderError(
            f"the automatic split of the {len(folders)} class folders of {root} leaves the "
            f"{split!r} split no class ({shares} of the classes, rounded); add class folders, "
            f"or make your own train/, val/ and test/ folders of classes"
        )
    return [folders[i] for i in chosen], f"{root}, split automatically, split_seed={split_seed}"


class ImageFolder:
    """One split of a folder of your own images (one sub-folder per class) as few-shot classes.

    Args:
        root: the folder (see the module docstring for its two layouts); required.
        split: "train", "val" or "test".
        image_size: side of the square images after resizing (default 84 for RGB, 28 for
            grayscale).
        channels: "rgb" (3 channels) or "grayscale" (1).
        split_seed: seed of the automatic class split (must be 0 with your own split folders).
        download: accepted for the common dataset interface; ``True`` is an error (your images
            are already on disk).
        progress: show a progress bar while decoding.

    The classes are the class folders of the split, sorted by name (``class_names``,
    ``class_folders``); ``files[c]`` lists class ``c``'s images in name order.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from mamlkit.data import EpisodeSampler, ImageFolder
    >>> tmp = tempfile.TemporaryDirectory()
    >>> root = Path(tmp.name)
    >>> for colour in ["red", "green", "blue"]:
    ...     folder = root / "train" / colour
    ...     folder.mkdir(parents=True)
    ...     for i in range(3):  # images of any size
    ...         Image.new("RGB", (30 + 10 * i, 20), colour).save(folder / f"{i}.png")
    >>> train = ImageFolder(root, "train", image_size=16)
    >>> train.class_names, train.image_shape, train.samples_per_class.tolist()
    (['blue', 'green', 'red'], (3, 16, 16), [3, 3, 3])
    >>> train.get([2], [0])[0, :, 0, 0]  # red, in [0, 1]
    tensor([1., 0., 0.])
    >>> EpisodeSampler(train, ways=3, shots=1, queries=2, meta_batch=2).sample().query_x.shape
    torch.Size([2, 6, 3, 16, 16])
    >>> tmp.cleanup()
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        split: str = "train",
        *,
        image_size: int | None = None,
        channels: str = "rgb",
        split_seed: int = 0,
        download: bool = False,
        progress: bool = False,
    ) -> None:
        self.split = check_split("folder", split, SPLITS)
        #: How the images are decoded (and how new images are read to match them).
        self.image_format = image_format(image_size, channels)
        if download:
            raise ConfigError(
                "the folder dataset reads your own images, there is nothing to download: drop "
                "--download"
            )
        if root is None:
            raise ConfigError(
                f"the folder dataset needs --data-root DIR (root=DIR): a folder holding "
                f"{LAYOUT_HINT}"
            )
        if isinstance(split_seed, bool) or not isinstance(split_seed, numbers.Integral):
            raise ConfigError(f"split_seed must be a non-negative integer, got {split_seed!r}")
        if split_seed < 0:
            raise ConfigError(f"split_seed must be a non-negative integer, got {split_seed!r}")
        self.root = check_folder(root, "image folder (--data-root)")
        self.split_seed = int(split_seed)
        try:
            folders, self.source = class_folders(self.root, split, self.split_seed)
            files = [image_files(folder) for folder in folders]
        except PermissionError as error:
            raise PermissionError(
                f"cannot read {error.filename or self.root}: permission denied; make the image "
                f"folder readable (chmod -R u+rX {self.root})"
            ) from None
        for folder, listed in zip(folders, files, strict=True):
            if not listed:
                raise ImageFolderError(
                    f"the class folder {folder} holds no images; add some or remove the folder"
                )
        self.class_names: list[str] = [folder.name for folder in folders]
        self.class_folders: list[Path] = folders
        self.files: list[list[Path]] = files
        counts = np.array([len(listed) for listed in files], dtype=np.int64)
        self._images = _decode([p for listed in files for p in listed], self.image_format, progress)
        self.num_classes: int = len(folders)
        self.image_shape: tuple[int, int, int] = self.image_format.shape
        self.samples_per_class: np.ndarray = counts
        self.samples_per_class.flags.writeable = False

    @property
    def description(self) -> str:
        """How error messages name this dataset, e.g. "the folder dataset's 'test' split (...)"."""
        return f"the folder dataset's {self.split!r} split ({self.source})"

    def __repr__(self) -> str:
        return (
            f"ImageFolder(root={str(self.root)!r}, split={self.split!r}, "
            f"classes={self.num_classes}, images={int(self.samples_per_class.sum())}, "
            f"image_size={self.image_format.image_size}, channels={self.image_format.channels!r})"
        )

    def get(self, class_indices: Any, sample_indices: Any) -> torch.Tensor:
        """Images ``sample_indices[i]`` of classes ``class_indices[i]`` as float32 [n, C, H, W]
        in [0, 1]; both arguments are 1-D integer sequences of equal length."""
        rows = image_rows(
            class_indices,
            sample_indices,
            self.samples_per_class,
            self.description,
            self.class_names,
        )
        return self.image_format.to_tensor(np.ascontiguousarray(self._images[rows]))

    def check_tasks(self, ways: int, shots: int, queries: int) -> None:
        """Refuse ``ways``-way tasks of ``shots + queries`` images per class that this split
        cannot give, naming the class folder and the fix (``mamlkit train`` and ``eval`` call it
        before drawing any task)."""
        if ways > self.num_classes:
            raise ConfigError(
                f"{self.description} has {self.num_classes} classes, fewer than ways={ways}: "
                f"add class folders or lower --ways"
            )
        needed = shots + queries
        short = np.flatnonzero(self.samples_per_class < needed)
        if short.size:
            c = int(short[0])
            more = f"; {short.size} classes have too few" if short.size > 1 else ""
            raise ConfigError(
                f"class {self.class_names[c]!r} of {self.description} has only "
                f"{int(self.samples_per_class[c])} images, but a task takes shots={shots} + "
                f"queries={queries} = {needed} images of each class{more}: add images to "
                f"{self.class_folders[c]}, remove it, or lower --shots / --queries"
            )


def _decode(paths: list[Path], fmt: ImageFormat, progress: bool) -> np.ndarray:
    """Every image file as uint8 ``[n, C, S, S]``, in one array (decoded once, kept in memory)."""
    out = np.empty((len(paths), *fmt.shape), dtype=np.uint8)
    for i, path in enumerate(progress_bar(paths, enabled=progress, desc="decode", unit="image")):
        out[i] = fmt.read(path)
    return out
