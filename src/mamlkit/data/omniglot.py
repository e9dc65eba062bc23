"""Omniglot for few-shot learning, split and preprocessed as in the few-shot literature.

Two split protocols (``split_protocol``):

* ``"vinyals"`` (the default), Vinyals et al. (2016) / Finn et al. (2017): all 1623 characters of
  the two official archives are sorted by name ("Alphabet/characterNN"), permuted with
  ``numpy.random.default_rng(split_seed)`` and cut into 1200 "train" and 423 "test" characters
  (or 1100 "train", 100 "val", 423 "test" with ``validation=True``; the test characters are the
  same in both modes). Train and test characters come from the same alphabets.
* ``"lake"``, Lake et al. (2015): "train" is the background set (the 30 alphabets, 964
  characters, of ``images_background.zip``), "test" the evaluation set (the 20 alphabets, 659
  characters, of ``images_evaluation.zip``), so test alphabets are never seen in training. With
  ``validation=True`` the 5 background alphabets with the fewest characters
  (:data:`LAKE_VALIDATION_ALPHABETS`, 81 characters) are "val" and the other 25 (883 characters)
  "train", as in Meta-Dataset (Triantafillou et al. 2020). The split is fixed by the archives:
  ``split_seed`` does not apply.

Images are read straight from the zips, resized to ``image_size`` (28 by default) with Lanczos
filtering and inverted so strokes are 1 and background 0. Rotating a character by 90/180/270
degrees makes three new classes (on by default for "train").

Class index layout: with rotations, class ``c`` is character ``c // 4`` of this split rotated by
``(c % 4) * 90`` degrees counter-clockwise; without, class ``c`` is character ``c``. Characters in a
split are in name order (``Omniglot.characters``); ``Omniglot.class_alphabets`` names each class's
alphabet (for within-alphabet episodes, see :class:`~mamlkit.data.EpisodeSampler`).

Decoding the 32,460 PNGs takes seconds, so the decoded uint8 images are cached in a ``.npz`` file
keyed by the archives' SHA-256, the image size and :data:`FORMAT_VERSION`.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from mamlkit.data.download import download_omniglot
from mamlkit.data.images import ImageFormat
from mamlkit.data.storage import (
    DATA_ENV,
    cache_key,
    cached,
    check_split,
    file_sha256,
    resolve_cache_dir,
    resolve_data_root,
    root_source,
    unreadable,
)
from mamlkit.io import atomic_write_bytes

#: Bump when the decoded representation changes, so stale cache files are not reused.
FORMAT_VERSION = 1

#: The official archives and how many characters each holds.
ARCHIVES: dict[str, int] = {"images_background.zip": 964, "images_evaluation.zip": 659}
NUM_CHARACTERS = sum(ARCHIVES.values())  # 1623
NUM_TEST = 423
SPLIT_SIZES: dict[bool, dict[str, int]] = {
    False: {"train": 1200, "test": NUM_TEST},
    True: {"train": 1100, "val": 100, "test": NUM_TEST},
}
NUM_ROTATIONS = 4

#: The split protocols: Vinyals et al.'s pooled split (the default) and Lake et al.'s alphabets.
SPLIT_PROTOCOLS: tuple[str, ...] = ("vinyals", "lake")

#: Lake et al.'s background set: the 30 alphabets of ``images_background.zip``, in name order.
BACKGROUND_ALPHABETS: tuple[str, ...] = (
    "Alphabet_of_the_Magi",
    "Anglo-Saxon_Futhorc",
    "Arcadian",
    "Armenian",
    "Asomtavruli_(Georgian)",
    "Balinese",
    "Bengali",
    "Blackfoot_(Canadian_Aboriginal_Syllabics)",
    "Braille",
    "Burmese_(Myanmar)",
    "Cyrillic",
    "Early_Aramaic",
    "Futurama",
    "Grantha",
    "Greek",
    "Gujarati",
    "Hebrew",
    "Inuktitut_(Canadian_Aboriginal_Syllabics)",
    "Japanese_(hiragana)",
    "Japanese_(katakana)",
    "Korean",
    "Latin",
    "Malay_(Jawi_-_Arabic)",
    "Mkhedruli_(Georgian)",
    "N_Ko",
    "Ojibwe_(Canadian_Aboriginal_Syllabics)",
    "Sanskrit",
    "Syriac_(Estrangelo)",
    "Tagalog",
    "Tifinagh",
)

#: The "val" alphabets of the lake protocol with ``validation=True``: the 5 background alphabets
#: with the fewest characters (14, 14, 16, 17 and 20; the next has 22), the choice of Meta-Dataset
#: (Triantafillou et al. 2020). A rule without a seed, and the largest share of alphabets (5 of
#: 30) for the fewest characters (81 of 964) taken from training.
LAKE_VALIDATION_ALPHABETS: tuple[str, ...] = (
    "Alphabet_of_the_Magi",
    "Blackfoot_(Canadian_Aboriginal_Syllabics)",
    "Inuktitut_(Canadian_Aboriginal_Syllabics)",
    "Ojibwe_(Canadian_Aboriginal_Syllabics)",
    "Tagalog",
)

#: Characters per split of the lake protocol, without and with a validation split.
LAKE_SPLIT_SIZES: dict[bool, dict[str, int]] = {
    False: {"train": 964, "test": 659},
    True: {"train": 883, "val": 81, "test": 659},
}


class OmniglotArchiveError(ValueError):
    """An Omniglot archive that cannot be read or lacks the official layout."""


def image_format(image_size: int = 28) -> ImageFormat:
    """How Omniglot turns a drawing into model input: grayscale, Lanczos-resized to
    ``image_size``, inverted (strokes 1, background 0), in [0, 1].

    >>> from mamlkit.data.omniglot import image_format
    >>> image_format().shape
    (1, 28, 28)
    """
    return ImageFormat(image_size, "grayscale", invert=True)


def split_characters(split: str, *, validation: bool = False, split_seed: int = 0) -> np.ndarray:
    """Indices (into the name-sorted list of all 1623 characters) of one split, sorted.

    Uses its own ``numpy.random.default_rng(split_seed)``, so global seeds never change the split.
    No data is needed: the split is a permutation of the character indices.

    >>> from mamlkit.data import split_characters
    >>> len(split_characters("train")), len(split_characters("test"))
    (1200, 423)
    >>> len(split_characters("val", validation=True))
    100
    >>> split_characters("val")
    Traceback (most recent call last):
        ...
    ValueError: omniglot split 'val' exists only with validation=True; valid splits without it:
    'train', 'test'
    """
    sizes = _check_split(split, validation)
    order = np.random.default_rng(split_seed).permutation(NUM_CHARACTERS)
    start = 0
    for name, size in sizes.items():
        if name == split:
            return np.sort(order[start : start + size])
        start += size
    raise AssertionError("unreachable")  # pragma: no cover


def lake_split_characters(
    names: Sequence[str], split: str, *, validation: bool = False
) -> np.ndarray:
    """Indices into ``names`` ("Alphabet/characterNN") of one split of the lake protocol, sorted.

    "train" is every character of a :data:`BACKGROUND_ALPHABETS` alphabet (less the
    :data:`LAKE_VALIDATION_ALPHABETS` with ``validation=True``, which are "val"); "test" is every
    other character (the evaluation alphabets). Fixed by the alphabets: no seed is involved.

    >>> from mamlkit.data import lake_split_characters
    >>> names = ["Angelic/character01", "Latin/character01", "Tagalog/character01"]
    >>> lake_split_characters(names, "train"), lake_split_characters(names, "test")
    (array([1, 2]), array([0]))
    >>> lake_split_characters(names, "val", validation=True)
    array([2])
    """
    _check_split(split, validation)
    alphabets = np.array([name.split("/", 1)[0] for name in names], dtype=object)
    background = np.isin(alphabets, BACKGROUND_ALPHABETS)
    held_out = np.isin(alphabets, LAKE_VALIDATION_ALPHABETS) & validation
    masks = {"train": background & ~held_out, "val": held_out, "test": ~background}
    return np.flatnonzero(masks[split])


def _check_protocol(split_protocol: str, split_seed: int) -> str:
    if split_protocol not in SPLIT_PROTOCOLS:
        valid = ", ".join(repr(p) for p in SPLIT_PROTOCOLS)
        raise ValueError(
            f"unknown omniglot split protocol {split_protocol!r}; valid protocols: {valid}"
        )
    if split_protocol == "lake" and split_seed != 0:
        raise ValueError(
            f"split_seed applies only to the 'vinyals' split protocol; the 'lake' split is fixed "
            f"by the archives' alphabets (got split_seed={split_seed!r})"
        )
    return split_protocol


def _check_split(split: str, validation: bool) -> dict[str, int]:
    sizes = SPLIT_SIZES[bool(validation)]
    if split not in sizes and split in SPLIT_SIZES[True]:
        valid = ", ".join(repr(s) for s in sizes)
        raise ValueError(
            f"omniglot split {split!r} exists only with validation=True; valid splits without "
            f"it: {valid}"
        )
    check_split("omniglot", split, sizes)
    return sizes


class _Decoded(NamedTuple):
    images: np.ndarray  # uint8 [total images, H, W], strokes 255
    offsets: np.ndarray  # int64 [characters + 1]; character i is images[offsets[i]:offsets[i+1]]
    names: list[str]  # "Alphabet/characterNN", sorted


class Omniglot:
    """One split of Omniglot as few-shot classes of uint8 images, served as float32 by :meth:`get`.

    Args:
        root: data root holding ``omniglot/images_background.zip`` and
            ``omniglot/images_evaluation.zip`` (default ``$MAMLKIT_DATA``, else
            ``~/.cache/mamlkit``). A folder holding the two zips directly also works.
        split: "train" or "test", or "train"/"val"/"test" with ``validation=True``.
        validation: carve validation characters out of the training ones (100 of the 1200 with
            the vinyals protocol; the 5 smallest background alphabets with the lake protocol).
        rotations: add the 90/180/270 degree rotations as classes; default only for "train".
        image_size: side of the square images after resizing (105 keeps the originals).
        download: fetch missing archives (see :mod:`mamlkit.data.download`).
        progress: show a progress bar while downloading.
        cache_dir: where decoded images are cached (default ``$MAMLKIT_CACHE``, else
            ``~/.cache/mamlkit/decoded``).
        split_seed: seed of the character permutation that defines the vinyals splits (must be
            0 with the lake protocol, whose split is fixed).
        split_protocol: "vinyals" (1623 characters pooled and permuted: 1200 train / 423 test)
            or "lake" (background alphabets train, evaluation alphabets test: 964 / 659); see
            the module docstring.

    A missing archive is a ``FileNotFoundError`` that says where it was looked for and how to get
    it; a damaged one an :class:`OmniglotArchiveError`. The examples need the archives, so they
    are not run as doctests:

    >>> from mamlkit.data import EpisodeSampler, Omniglot
    >>> train = Omniglot(split="train", download=True)  # doctest: +SKIP
    >>> train.num_classes, train.image_shape  # doctest: +SKIP
    (4800, (1, 28, 28))
    >>> sampler = EpisodeSampler(train, 5, shots=1, queries=15, meta_batch=32)  # doctest: +SKIP
    >>> support_x, support_y, query_x, query_y = sampler.sample()  # doctest: +SKIP
    >>> support_x.shape  # doctest: +SKIP
    torch.Size([32, 5, 1, 28, 28])

    (4800 classes: the 1200 training characters, each also rotated by 90, 180 and 270 degrees.)

    ``class_alphabets`` names the alphabet of every class and ``class_characters`` its character
    (an index into ``characters``), so an :class:`~mamlkit.data.EpisodeSampler` given
    ``groups=ds.class_alphabets, sources=ds.class_characters`` draws each task's classes from one
    alphabet, one rotation per character.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        *,
        validation: bool = False,
        rotations: bool | None = None,
        image_size: int = 28,
        download: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        split_seed: int = 0,
        progress: bool = True,
        split_protocol: str = "vinyals",
    ) -> None:
        # Cheap argument checks first, before any file is touched.
        self.split_protocol = _check_protocol(split_protocol, split_seed)
        if split_protocol == "vinyals":
            characters = split_characters(split, validation=validation, split_seed=split_seed)
        else:
            _check_split(split, validation)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        self.split = split
        self.validation = bool(validation)
        self.rotations = (split == "train") if rotations is None else bool(rotations)
        self.image_size = image_size
        #: How the drawings were decoded (and how new drawings are read to match them).
        self.image_format = image_format(image_size)
        self.split_seed = split_seed
        self.root = resolve_data_root(root)
        try:
            self.archives = _locate_archives(self.root, root, download, progress)
            decoded, self.cache_path, self.from_cache = _load_decoded(
                self.archives, image_size, resolve_cache_dir(cache_dir)
            )
        except PermissionError as error:
            raise unreadable(error, "Omniglot", self.root, resolve_cache_dir(cache_dir)) from None
        if split_protocol == "lake":
            characters = _lake_characters(decoded.names, split, self.validation, self.archives)
        counts = np.diff(decoded.offsets)[characters]
        self.characters: list[str] = [decoded.names[i] for i in characters]
        self.num_characters = len(characters)
        images = np.concatenate(
            [decoded.images[decoded.offsets[i] : decoded.offsets[i + 1]] for i in characters]
        )
        self._images = torch.from_numpy(images)  # uint8 [images, H, W]
        self._char_counts = torch.from_numpy(counts.astype(np.int64))
        self._char_offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]))

        self._rot = NUM_ROTATIONS if self.rotations else 1
        self.num_classes: int = self.num_characters * self._rot
        self.image_shape: tuple[int, int, int] = (1, image_size, image_size)
        self.samples_per_class: np.ndarray = np.repeat(counts.astype(np.int64), self._rot)
        self.samples_per_class.flags.writeable = False
        self.class_names: list[str] = [
            f"{name}@rot{90 * k}" if k else name
            for name in self.characters
            for k in range(self._rot)
        ]
        alphabet_of = [name.split("/", 1)[0] for name in self.characters]
        self.alphabets: list[str] = sorted(set(alphabet_of))
        self.class_alphabets: list[str] = [a for a in alphabet_of for _ in range(self._rot)]
        self.class_characters: np.ndarray = np.repeat(
            np.arange(self.num_characters, dtype=np.int64), self._rot
        )
        self.class_characters.flags.writeable = False

    @property
    def description(self) -> str:
        """How error messages name this dataset, e.g. "the omniglot 'test' split"."""
        lake = " (lake protocol)" if self.split_protocol == "lake" else ""
        return f"the omniglot {self.split!r} split{lake}"

    def __repr__(self) -> str:
        return (
            f"Omniglot(split={self.split!r}, validation={self.validation}, "
            f"classes={self.num_classes}, characters={self.num_characters}, "
            f"rotations={self.rotations}, image_size={self.image_size}, "
            f"split_seed={self.split_seed}, split_protocol={self.split_protocol!r})"
        )

    def get(self, class_indices: Any, sample_indices: Any) -> torch.Tensor:
        """Images ``sample_indices[i]`` of classes ``class_indices[i]`` as float32 [n, 1, H, W].

        Both arguments are 1-D integer sequences (lists, numpy arrays or tensors) of equal length.
        Pixels are in [0, 1], strokes 1. Rotated classes are rotated here, on the fly.
        """
        cls = _index_tensor(class_indices, "class_indices")
        smp = _index_tensor(sample_indices, "sample_indices")
        if cls.shape != smp.shape:
            raise ValueError(
                f"class_indices and sample_indices must have the same length, got "
                f"{cls.numel()} and {smp.numel()}"
            )
        if cls.numel() and (int(cls.min()) < 0 or int(cls.max()) >= self.num_classes):
            bad = int(cls[(cls < 0) | (cls >= self.num_classes)][0])
            raise IndexError(
                f"class index {bad} out of range: {self.description} has {self.num_classes} "
                f"classes (0..{self.num_classes - 1})"
            )
        char = torch.div(cls, self._rot, rounding_mode="floor")
        counts = self._char_counts[char]
        out_of_range = (smp < 0) | (smp >= counts)
        if bool(out_of_range.any()):
            i = int(out_of_range.nonzero()[0, 0])
            c = int(cls[i])
            raise IndexError(
                f"sample index {int(smp[i])} out of range for class {c} ({self.class_names[c]}), "
                f"which has {int(counts[i])} samples"
            )
        images = self._images.index_select(0, self._char_offsets[char] + smp)
        if self._rot > 1:
            k = cls % self._rot
            for turns in range(1, self._rot):
                rows = (k == turns).nonzero().squeeze(1)
                if rows.numel():
                    rotated = torch.rot90(images.index_select(0, rows), turns, dims=(1, 2))
                    images.index_copy_(0, rows, rotated)
        return self.image_format.to_tensor(images.unsqueeze(1))


def _lake_characters(
    names: Sequence[str], split: str, validation: bool, archives: Sequence[Path]
) -> np.ndarray:
    """:func:`lake_split_characters` of the decoded names, checked against the official split
    sizes (archives whose alphabets differ from Lake et al.'s are refused, not re-split)."""
    expected = LAKE_SPLIT_SIZES[validation]
    sizes = {s: len(lake_split_characters(names, s, validation=validation)) for s in expected}
    if sizes != expected:
        raise OmniglotArchiveError(
            f"the archives {archives[0]} and {archives[1]} do not hold Lake et al.'s alphabets: "
            f"the lake split protocol gives {sizes} characters, expected {expected}; it needs "
            f"the official archives"
        )
    return lake_split_characters(names, split, validation=validation)


def _index_tensor(values: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(values)
    if t.numel() == 0:
        t = t.to(torch.int64)
    if t.dtype == torch.bool or t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"{what} must hold integers, got dtype {t.dtype}")
    if t.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def _locate_archives(
    root: Path, given: object, download: bool, progress: bool = True
) -> list[Path]:
    """Paths of the two archives under ``root``, downloading missing ones if asked to."""
    source = root_source(given)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(
            f"the data root {root} (from {source}) is a file, not a folder; pass the folder "
            f"that holds omniglot/images_background.zip (--data-root / ${DATA_ENV})"
        )
    folder = root / "omniglot"
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file; expected a folder holding the archives")
    if not any((folder / n).exists() for n in ARCHIVES) and all(
        (root / n).is_file() for n in ARCHIVES
    ):
        folder = root  # the caller pointed at the folder holding the zips themselves
    paths = [folder / name for name in ARCHIVES]
    missing = [p for p in paths if not p.exists()]
    if missing and download:
        download_omniglot(folder, progress=progress)
    elif missing:
        raise FileNotFoundError(
            f"Omniglot archive not found: {missing[0]} (data root {root}, from {source}). "
            f"Pass download=True (--download on the command line) to fetch it, or set --data-root "
            f"/ ${DATA_ENV} to a folder holding omniglot/images_background.zip and "
            f"omniglot/images_evaluation.zip."
        )
    for p in paths:
        if not p.is_file():
            raise OmniglotArchiveError(f"{p} is not a file; expected the zip archive there")
    return paths


def _load_decoded(
    archives: Sequence[Path], image_size: int, cache_dir: Path
) -> tuple[_Decoded, Path | None, bool]:
    """All characters' images, from the cache if valid, else decoded (and cached if possible).

    Returns ``(decoded, cache file or None when caching failed, whether it came from the cache)``.
    """
    meta = {
        "format": FORMAT_VERSION,
        "image_size": image_size,
        "archives": {p.name: file_sha256(p) for p in archives},
    }
    return cached(
        cache_dir / f"omniglot-{image_size}px-{cache_key(meta)}.npz",
        dataset="Omniglot",
        read=lambda path: _read_cache(path, meta),
        decode=lambda: _merge([_decode_archive(p, image_size) for p in archives]),
        write=lambda path, decoded: _write_cache(path, decoded, meta),
        redo="decoding the archives again",
    )


def _read_cache(path: Path, meta: dict[str, Any]) -> _Decoded:
    """The cached arrays; a ``ValueError`` if the file does not match the archives."""
    with np.load(path, allow_pickle=False) as data:
        stored_meta = json.loads(str(data["meta"][()]))
        images, offsets, names = data["images"], data["offsets"], data["names"].tolist()
    size = meta["image_size"]
    consistent = (
        stored_meta == meta
        and images.dtype == np.uint8
        and images.shape[1:] == (size, size)
        and offsets.ndim == 1
        and len(offsets) == len(names) + 1 == NUM_CHARACTERS + 1
        and offsets[0] == 0
        and offsets[-1] == len(images)
        and bool(np.all(np.diff(offsets) > 0))
    )
    if not consistent:
        raise ValueError("contents do not match the archives")
    return _Decoded(images, offsets.astype(np.int64), [str(n) for n in names])


def _write_cache(path: Path, decoded: _Decoded, meta: dict[str, Any]) -> None:
    """Write atomically (temporary file in the same folder, then ``os.replace``)."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images=decoded.images,
        offsets=decoded.offsets,
        names=np.array(decoded.names, dtype=str),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    atomic_write_bytes(path, buffer.getvalue())


def _merge(parts: Sequence[_Decoded]) -> _Decoded:
    """Concatenate decoded archives, characters sorted by name."""
    names = [n for part in parts for n in part.names]
    if len(set(names)) != len(names):
        raise OmniglotArchiveError("the archives share character names; expected disjoint ones")
    images = np.concatenate([part.images for part in parts])
    starts = np.concatenate(
        [part.offsets[:-1] + sum(len(p.images) for p in parts[:i]) for i, part in enumerate(parts)]
    )
    counts = np.concatenate([np.diff(part.offsets) for part in parts])
    order = sorted(range(len(names)), key=names.__getitem__)
    images = np.concatenate([images[starts[i] : starts[i] + counts[i]] for i in order])
    offsets = np.concatenate([[0], np.cumsum(counts[order])]).astype(np.int64)
    return _Decoded(images, offsets, [names[i] for i in order])


def _list_characters(zf: zipfile.ZipFile, path: Path, top: str) -> dict[str, list[str]]:
    """``{"Alphabet/characterNN": [sorted member names]}`` of ``top/<Alphabet>/<char>/*.png``."""
    characters: dict[str, list[str]] = {}
    for member in zf.namelist():
        # Images are read from the archive, never extracted, but a member that would land
        # outside the folder it is extracted to marks an archive that is not to be trusted.
        if member.startswith(("/", "\\")) or ".." in member.replace("\\", "/").split("/"):
            raise OmniglotArchiveError(
                f"{path} has a member {member!r} that would escape the folder it is extracted "
                "to (an absolute path or '..'); refusing this archive: it is not the official one"
            )
        parts = member.split("/")
        if len(parts) == 4 and parts[0] == top and parts[3].lower().endswith(".png"):
            characters.setdefault(f"{parts[1]}/{parts[2]}", []).append(member)
    expected = ARCHIVES.get(path.name)
    if not characters:
        example = next(iter(zf.namelist()), "nothing")
        raise OmniglotArchiveError(
            f"{path} lacks the Omniglot layout: no {top}/<Alphabet>/<characterNN>/<image>.png "
            f"entries (first entry: {example!r}). Is this the right archive?"
        )
    if expected is not None and len(characters) != expected:
        raise OmniglotArchiveError(
            f"{path} holds {len(characters)} characters under {top}/, expected {expected}; the "
            f"archive is incomplete or not the official one"
        )
    return {name: sorted(members) for name, members in sorted(characters.items())}


def _decode_archive(path: Path, image_size: int) -> _Decoded:
    """Decode every character image of one archive: grayscale, Lanczos-resized, inverted (uint8)."""
    top = path.name.removesuffix(".zip")
    decode = image_format(image_size).pixels
    try:
        with zipfile.ZipFile(path) as zf:
            characters = _list_characters(zf, path, top)
            counts = [len(members) for members in characters.values()]
            images = np.empty((sum(counts), image_size, image_size), dtype=np.uint8)
            members = (m for ms in characters.values() for m in ms)
            for i, member in enumerate(members):
                try:
                    with Image.open(io.BytesIO(zf.read(member))) as im:
                        images[i] = decode(im)[0]
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
                    raise OmniglotArchiveError(
                        f"{path}: cannot decode {member} ({type(e).__name__}: {e}); the archive "
                        f"is corrupt: delete it and download it again"
                    ) from e
    except zipfile.BadZipFile as e:
        raise OmniglotArchiveError(
            f"{path} is not a readable zip archive ({e}); it is truncated or corrupt: delete it "
            f"and download it again (download=True / --download)"
        ) from e
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return _Decoded(images, offsets, list(characters))
