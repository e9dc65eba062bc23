"""CIFAR-FS and FC100: the two few-shot splits of CIFAR-100, read from its official binary archive.

Both pool the 50,000 training and 10,000 test images of CIFAR-100 (Krizhevsky 2009) into its
100 fine classes of 600 images each, and split the classes:

* **CIFAR-FS** (Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with differentiable
  closed-form solvers", ICLR 2019): 64 train, 16 val and 20 test classes drawn at random
  (:data:`CIFAR_FS_SPLITS`, the class lists of the R2D2 code's split files).
* **FC100** (Oreshkin, Rodríguez & Lacoste, "TADAM: Task dependent adaptive metric for improved
  few-shot learning", NeurIPS 2018): split by *superclass*, 12 train, 4 val and 4 test of the 20
  (:data:`FC100_SPLITS`): 60 / 20 / 20 classes, and no test class shares a superclass with a
  training class, so the test tasks are further from training than CIFAR-FS's.

The archive is ``<root>/cifar100/cifar-100-binary.tar.gz`` (or ``<root>/cifar-100-binary.tar.gz``),
read in one pass with :mod:`tarfile` and :func:`numpy.frombuffer` (nothing is unpickled or
extracted). Its members ``cifar-100-binary/train.bin`` and ``test.bin`` hold 3074-byte records:
the coarse label, the fine label, then 3072 pixel bytes, the 1024 red values (row-major 32x32),
then the green, then the blue; ``fine_label_names.txt`` and ``coarse_label_names.txt`` name the
labels, one per line. A class's images are its ``train.bin`` records in file order, then its
``test.bin`` ones. Images are served as float32 ``[3, 32, 32]`` in [0, 1].

``download=True`` fetches the archive from :data:`CIFAR100_URL` (or ``$MAMLKIT_CIFAR100_URL``)
and checks its MD5 (:data:`ARCHIVE_MD5`) before it is moved into place (as for Omniglot, see
:mod:`mamlkit.data.download`); an archive already on disk is not checksummed, but one that is not
a readable CIFAR-100 binary archive is a :class:`CifarArchiveError` naming it, with its MD5 and
the official one.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mamlkit.data.download import download_file, md5sum
from mamlkit.data.images import ImageFormat
from mamlkit.data.storage import (
    DATA_ENV,
    check_split,
    image_rows,
    resolve_cache_dir,
    resolve_data_root,
    root_source,
    unreadable,
)

#: The official CIFAR-100 binary archive, where it is published and its MD5 (from the CIFAR
#: page; looked up at call time, so tests can monkeypatch it).
ARCHIVE = "cifar-100-binary.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz"
ARCHIVE_MD5 = "03b5dce01913d631647c71ecec9e9cb8"

#: Environment variable overriding :data:`CIFAR100_URL` (e.g. a ``file://`` mirror).
CIFAR100_URL_ENV = "MAMLKIT_CIFAR100_URL"

#: The folder under the data root that holds the archive.
FOLDER = "cifar100"

#: The archive's members that are read.
TOP = "cifar-100-binary"
MEMBERS: tuple[str, ...] = (
    f"{TOP}/train.bin",
    f"{TOP}/test.bin",
    f"{TOP}/fine_label_names.txt",
    f"{TOP}/coarse_label_names.txt",
)

#: Bytes of one record: coarse label, fine label, 3 x 32 x 32 pixels (R, G, B planes).
RECORD_BYTES = 2 + 3 * 32 * 32

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: CIFAR-100's 20 superclasses (coarse labels, in label order) and their 5 classes each.
SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}

#: CIFAR-FS's class split (Bertinetto et al., ICLR 2019: the lists of ``train.txt``, ``val.txt``
#: and ``test.txt`` in the split files of their R2D2 code, here in name order): 64 / 16 / 20.
CIFAR_FS_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "apple", "aquarium_fish", "bear", "bee", "bottle", "bowl", "boy", "bridge", "bus", "can",
        "castle", "caterpillar", "chair", "clock", "cloud", "cockroach", "couch", "cup",
        "dinosaur", "dolphin", "elephant", "forest", "girl", "hamster", "house", "kangaroo",
        "keyboard", "lawn_mower", "lion", "lizard", "lobster", "mountain", "mouse", "mushroom",
        "oak_tree", "orange", "orchid", "palm_tree", "pear", "pine_tree", "plate", "porcupine",
        "possum", "rabbit", "raccoon", "ray", "road", "seal", "shrew", "skunk", "skyscraper",
        "snake", "spider", "squirrel", "streetcar", "sunflower", "tank", "tiger", "train",
        "trout", "tulip", "turtle", "willow_tree", "wolf",
    ),
    "val": (
        "beaver", "beetle", "butterfly", "camel", "cattle", "crab", "crocodile", "flatfish",
        "lamp", "maple_tree", "motorcycle", "otter", "sea", "shark", "television", "tractor",
    ),
    "test": (
        "baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain",
        "poppy", "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe",
        "whale", "woman", "worm",
    ),
}  # fmt: skip

#: FC100's superclass split (Oreshkin et al., NeurIPS 2018, TADAM; their data script's coarse
#: labels {1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19} / {8, 11, 13, 16} / {0, 7, 12, 14}):
#: 12 / 4 / 4 superclasses, 60 / 20 / 20 classes.
FC100_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "fish", "flowers", "food_containers", "fruit_and_vegetables",
        "household_electrical_devices", "household_furniture", "large_man-made_outdoor_things",
        "large_natural_outdoor_scenes", "reptiles", "trees", "vehicles_1", "vehicles_2",
    ),
    "val": (
        "large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates",
        "small_mammals",
    ),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}  # fmt: skip


class CifarArchiveError(ValueError):
    """A CIFAR-100 archive that cannot be read or is not the official binary version; the
    message names the file, its MD5 and the official one, and how to replace it."""


def image_format() -> ImageFormat:
    """How CIFAR images are model input: RGB 32x32 in [0, 1] (new images are resized to 32).

    >>> from mamlkit.data.cifar import image_format
    >>> image_format().shape
    (3, 32, 32)
    """
    return ImageFormat(32, "rgb")


def split_classes(dataset: str, split: str) -> tuple[str, ...]:
    """The fine classes of ``split`` of ``dataset`` ("cifar-fs" or "fc100"), in name order.

    >>> from mamlkit.data.cifar import split_classes
    >>> [len(split_classes("cifar-fs", s)) for s in ("train", "val", "test")]
    [64, 16, 20]
    >>> split_classes("fc100", "test")[:5]
    ('baby', 'beaver', 'bee', 'beetle', 'boy')
    """
    check_split(dataset, split, SPLITS)
    if dataset == "cifar-fs":
        return tuple(sorted(CIFAR_FS_SPLITS[split]))
    if dataset == "fc100":
        return tuple(sorted(c for s in FC100_SPLITS[split] for c in SUPERCLASSES[s]))
    raise ValueError(f"unknown CIFAR-100 few-shot dataset {dataset!r}; use cifar-fs or fc100")


def cifar100_base_url(base_url: str | None = None) -> str:
    """Where the archive is fetched from: ``base_url``, else ``$MAMLKIT_CIFAR100_URL``, else
    :data:`CIFAR100_URL` (the archive is ``<base>/cifar-100-binary.tar.gz``)."""
    return (base_url or os.environ.get(CIFAR100_URL_ENV) or CIFAR100_URL).rstrip("/")


def _manual_hint(folder: Path) -> str:
    return (
        f"To get it by hand, download {CIFAR100_URL}/{ARCHIVE} (MD5 {ARCHIVE_MD5}) on a machine "
        f"with network access and copy it into {folder}/, or point --data-root / ${DATA_ENV} at "
        f"a folder that holds {FOLDER}/{ARCHIVE}"
    )


def download_cifar100(
    folder: str | os.PathLike[str], *, base_url: str | None = None, progress: bool = True
) -> Path | None:
    """Download the CIFAR-100 binary archive into ``folder`` unless it is there; returns its
    path when it was fetched, else ``None``. The download is checked against
    :data:`ARCHIVE_MD5` before it is moved into place (``ChecksumError`` otherwise).

    >>> from mamlkit.data.cifar import download_cifar100
    >>> download_cifar100("data/cifar100")  # doctest: +SKIP
    PosixPath('data/cifar100/cifar-100-binary.tar.gz')
    """
    folder = Path(folder)
    dest = folder / ARCHIVE
    if dest.is_file():
        return None
    url = f"{cifar100_base_url(base_url)}/{ARCHIVE}"
    return download_file(url, dest, ARCHIVE_MD5, progress=progress, hint=_manual_hint(folder))


def locate_archive(root: Path, given: object, download: bool, progress: bool = True) -> Path:
    """The archive under ``root`` (``cifar100/`` or ``root`` itself), downloaded if missing
    and ``download``; a missing one is a ``FileNotFoundError`` saying how to get it."""
    source = root_source(given)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(
            f"the data root {root} (from {source}) is a file, not a folder; pass the folder "
            f"that holds {FOLDER}/{ARCHIVE} (--data-root / ${DATA_ENV})"
        )
    path = root / FOLDER / ARCHIVE
    if not path.exists() and (root / ARCHIVE).is_file():
        return root / ARCHIVE  # the caller pointed at the folder holding the archive itself
    if not path.exists() and download:
        download_cifar100(path.parent, progress=progress)
    elif not path.exists():
        raise FileNotFoundError(
            f"CIFAR-100 archive not found: {path} (data root {root}, from {source}). Pass "
            f"download=True (--download on the command line) to fetch it, or set --data-root / "
            f"${DATA_ENV} to a folder holding {FOLDER}/{ARCHIVE}. {_manual_hint(path.parent)}"
        )
    if not path.is_file():
        raise CifarArchiveError(f"{path} is not a file; expected the {ARCHIVE} archive there")
    return path


def _not_official(path: Path, problem: str) -> CifarArchiveError:
    """The error for an archive that is damaged or not CIFAR-100's binary version."""
    try:
        digest = f"its MD5 is {md5sum(path)}"
    except OSError:
        digest = "it cannot be read"
    return CifarArchiveError(
        f"{path} is not the official CIFAR-100 binary archive: {problem} ({digest}; the official "
        f"{ARCHIVE} has MD5 {ARCHIVE_MD5}). Delete it and fetch it again with --download, or "
        f"download {CIFAR100_URL}/{ARCHIVE} by hand"
    )


def read_archive(path: Path) -> dict[str, bytes]:
    """The bytes of the archive's :data:`MEMBERS`, read in one pass over the gzip stream."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in MEMBERS and member.isfile():
                    stream = tar.extractfile(member)
                    found[name] = stream.read() if stream is not None else b""
    except PermissionError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise _not_official(path, f"it cannot be read as a tar.gz ({error})") from None
    missing = [name for name in MEMBERS if name not in found]
    if missing:
        raise _not_official(path, f"it lacks {', '.join(missing)}")
    return found


def _label_names(data: bytes, member: str, path: Path) -> list[str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise _not_official(path, f"{member} is not a text file of label names") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _records(data: bytes, member: str, path: Path) -> np.ndarray:
    """uint8 ``[records, RECORD_BYTES]`` over the bytes of ``train.bin`` or ``test.bin``."""
    if not data or len(data) % RECORD_BYTES:
        raise _not_official(
            path, f"{member} holds {len(data)} bytes, not whole {RECORD_BYTES}-byte records"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)


def load_classes(path: Path, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``classes`` in the archive ``path``: uint8 ``[n, 3, 32, 32]``, class by
    class (in the order of ``classes``; within a class ``train.bin`` then ``test.bin`` records,
    in file order), and the int64 count of each class.

    The archive must name the classes, give every record of a class the superclass
    :data:`SUPERCLASSES` gives it, and hold at least one image of each."""
    members = read_archive(path)
    fine_names = _label_names(members[f"{TOP}/fine_label_names.txt"], "fine_label_names", path)
    coarse_names = _label_names(
        members[f"{TOP}/coarse_label_names.txt"], "coarse_label_names", path
    )
    missing = [name for name in classes if name not in fine_names]
    if missing:
        raise _not_official(path, f"its fine_label_names.txt lacks {', '.join(missing[:5])}")
    superclass_of = {c: s for s, members_ in SUPERCLASSES.items() for c in members_}
    lacking = sorted({superclass_of[c] for c in classes} - set(coarse_names))
    if lacking:
        raise _not_official(path, f"its coarse_label_names.txt lacks {', '.join(lacking)}")
    position = np.full(256, -1, dtype=np.int64)  # fine label -> index into classes
    position[[fine_names.index(c) for c in classes]] = np.arange(len(classes))
    expected_coarse = np.full(256, -1, dtype=np.int64)  # fine label -> its coarse label
    for c in classes:
        expected_coarse[fine_names.index(c)] = coarse_names.index(superclass_of[c])
    files = [_records(members[f"{TOP}/{name}"], name, path) for name in ("train.bin", "test.bin")]
    del members
    for name, records in zip(("train.bin", "test.bin"), files, strict=True):
        fine, coarse = records[:, 1].astype(np.int64), records[:, 0].astype(np.int64)
        wanted = position[fine] >= 0
        wrong = wanted & (coarse != expected_coarse[fine])
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise _not_official(
                path,
                f"record {row} of {name} is class {fine_names[fine[row]]} with coarse label "
                f"{int(coarse[row])}, not that of {superclass_of[fine_names[fine[row]]]}",
            )
    labels = np.concatenate([position[records[:, 1]] for records in files])
    counts = np.bincount(labels[labels >= 0], minlength=len(classes)).astype(np.int64)
    if (counts == 0).any():
        empty = classes[int(np.flatnonzero(counts == 0)[0])]
        raise _not_official(path, f"it holds no image of class {empty}")
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] >= 0]
    first = len(files[0])
    images = np.empty((len(order), RECORD_BYTES - 2), dtype=np.uint8)
    in_train = order < first
    images[in_train] = files[0][order[in_train], 2:]
    images[~in_train] = files[1][order[~in_train] - first, 2:]
    return images.reshape(-1, 3, 32, 32), counts


class CifarFewShot:
    """One split of CIFAR-FS or FC100 as few-shot classes, served as float32 by :meth:`get`.

    Args:
        dataset: "cifar-fs" or "fc100" (see the module docstring for their class splits).
        root: data root holding ``cifar100/cifar-100-binary.tar.gz`` (default
            ``$MAMLKIT_DATA``, else ``~/.cache/mamlkit``); a folder holding the archive itself
            also works.
        split: "train", "val" or "test".
        download: fetch the archive when it is missing (MD5-checked).
        progress: show a progress bar while downloading.

    Reading the archive takes a few seconds; nothing is cached on disk. The examples need the
    archive, so they are not run as doctests:

    >>> from mamlkit.data import CifarFewShot
    >>> test = CifarFewShot("fc100", split="test", download=True)  # doctest: +SKIP
    >>> test.num_classes, test.image_shape, test.samples_per_class[:3]  # doctest: +SKIP
    (20, (3, 32, 32), array([600, 600, 600]))
    """

    def __init__(
        self,
        dataset: str,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        download: bool = False,
        progress: bool = True,
    ) -> None:
        classes = split_classes(dataset, split)
        self.dataset = dataset
        self.split = split
        #: How the images are served (and how new images are read to match them).
        self.image_format = image_format()
        self.root = resolve_data_root(root)
        try:
            self.archive = locate_archive(self.root, root, download, progress)
            images, counts = load_classes(self.archive, classes)
        except PermissionError as error:
            raise unreadable(error, dataset, self.root, resolve_cache_dir()) from None
        superclass_of = {c: s for s, members in SUPERCLASSES.items() for c in members}
        self.class_names: list[str] = list(classes)
        self.class_superclasses: list[str] = [superclass_of[c] for c in classes]
        self._images = images  # uint8 [images, 3, 32, 32], class by class
        self.num_classes: int = len(classes)
        self.image_shape: tuple[int, int, int] = (3, 32, 32)
        self.samples_per_class: np.ndarray = counts
        self.samples_per_class.flags.writeable = False

    @property
    def description(self) -> str:
        """How error messages name this dataset, e.g. "the cifar-fs 'test' split"."""
        return f"the {self.dataset} {self.split!r} split"

    def __repr__(self) -> str:
        return (
            f"CifarFewShot({self.dataset!r}, split={self.split!r}, classes={self.num_classes}, "
            f"images={len(self._images)})"
        )

    def get(self, class_indices: Any, sample_indices: Any) -> torch.Tensor:
        """Images ``sample_indices[i]`` of classes ``class_indices[i]`` as float32
        ``[n, 3, 32, 32]`` in [0, 1]; both are 1-D integer sequences of equal length."""
        rows = image_rows(
            class_indices,
            sample_indices,
            self.samples_per_class,
            self.description,
            self.class_names,
        )
        return self.image_format.to_tensor(np.ascontiguousarray(self._images[rows]))
