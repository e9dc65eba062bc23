"""Where datasets live on disk, and the decoded-image caches they share.

Every dataset finds its files under one *data root* (``root``, else ``$MAMLKIT_DATA``, else
``~/.cache/mamlkit``) and caches its decoded images in one *cache folder* (``cache_dir``, else
``$MAMLKIT_CACHE``, else ``~/.cache/mamlkit/decoded``), keyed by a digest of everything the
decoded images depend on. A cache is disposable: an unreadable one is rebuilt, an unwritable
folder only costs the decoding time again, and both say so in a warning. Split names are checked
the same way everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

DATA_ENV = "MAMLKIT_DATA"
CACHE_ENV = "MAMLKIT_CACHE"


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root``, else ``$MAMLKIT_DATA``, else ``~/.cache/mamlkit``."""
    if root is None:
        root = os.environ.get(DATA_ENV) or Path.home() / ".cache" / "mamlkit"
    return Path(root).expanduser()


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The decoded-image cache folder: ``cache_dir``, else ``$MAMLKIT_CACHE``, else
    ``~/.cache/mamlkit/decoded``."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mamlkit" / "decoded"
    return Path(cache_dir).expanduser()


def root_source(given: object) -> str:
    """Where a data root came from, for error messages."""
    if given is not None:
        return "the root argument"
    if os.environ.get(DATA_ENV):
        return f"${DATA_ENV}"
    return f"the default, as neither root nor ${DATA_ENV} was set"


def unreadable(
    error: PermissionError, dataset: str, root: Path, cache_dir: Path
) -> PermissionError:
    """A one-line ``PermissionError`` for a file or folder of ``dataset`` (under its data root
    ``root``, or its decoded-image cache) that cannot be read, saying how to fix it."""
    where = Path(error.filename) if error.filename else root
    if where.is_relative_to(cache_dir):
        return PermissionError(
            f"cannot read {where}: permission denied (the decoded-image cache of {dataset}); make "
            f"it readable or point cache_dir / ${CACHE_ENV} at another folder"
        )
    return PermissionError(
        f"cannot read {where}: permission denied ({dataset} data root {root}); make it readable "
        f"(chmod -R u+rX {root}) or point --data-root / ${DATA_ENV} at a readable copy"
    )


def check_split(dataset: str, split: str, valid: Collection[str]) -> str:
    """``split`` if it is one of ``valid``, else a ``ValueError`` listing them.

    >>> from mamlkit.data.storage import check_split
    >>> check_split("sinusoid", "test", ("train", "val", "test"))
    'test'
    >>> check_split("sinusoid", "validation", ("train", "val", "test"))
    Traceback (most recent call last):
        ...
    ValueError: unknown sinusoid split 'validation'; valid splits: 'train', 'val', 'test'
    """
    if split not in valid:
        names = ", ".join(repr(name) for name in valid)
        raise ValueError(f"unknown {dataset} split {split!r}; valid splits: {names}")
    return split


def index_array(values: Any, what: str) -> np.ndarray:
    """``values`` (a list, numpy array or tensor of integers) as a 1-D int64 array; anything else
    is an error naming ``what`` (the argument of a dataset's ``get``).

    >>> import torch
    >>> from mamlkit.data.storage import index_array
    >>> index_array(torch.tensor([2, 0]), "class_indices")
    array([2, 0])
    >>> index_array([0.5], "sample_indices")
    Traceback (most recent call last):
        ...
    TypeError: sample_indices must hold integers, got dtype float64
    """
    array = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if array.size == 0:
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {array.shape}")
    return array.astype(np.int64)


def image_rows(
    class_indices: Any,
    sample_indices: Any,
    samples_per_class: np.ndarray,
    description: str,
    class_names: list[str],
) -> np.ndarray:
    """The rows of images stored class by class (``samples_per_class[c]`` rows for class ``c``)
    that a dataset's ``get(class_indices, sample_indices)`` asks for; an index out of range is an
    error naming ``description`` (e.g. "the cifar-fs 'test' split") and the class.

    >>> import numpy as np
    >>> from mamlkit.data.storage import image_rows
    >>> image_rows([1, 0], [2, 0], np.array([3, 4]), "a split", ["a", "b"])
    array([5, 0])
    """
    cls = index_array(class_indices, "class_indices")
    smp = index_array(sample_indices, "sample_indices")
    if cls.shape != smp.shape:
        raise ValueError(
            f"class_indices and sample_indices must have the same length, got "
            f"{cls.size} and {smp.size}"
        )
    num_classes = len(samples_per_class)
    bad = (cls < 0) | (cls >= num_classes)
    if bad.any():
        raise IndexError(
            f"class index {int(cls[bad][0])} out of range: {description} has "
            f"{num_classes} classes (0..{num_classes - 1})"
        )
    counts = samples_per_class[cls]
    bad = (smp < 0) | (smp >= counts)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IndexError(
            f"sample index {int(smp[i])} out of range for class {int(cls[i])} "
            f"({class_names[cls[i]]}), which has {int(counts[i])} samples"
        )
    offsets = np.concatenate([[0], np.cumsum(samples_per_class)[:-1]]).astype(np.int64)
    return offsets[cls] + smp


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered per path, size and modification time (archives
    are hashed once per process)."""
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _SHA_MEMO:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _SHA_MEMO[memo_key] = digest.hexdigest()
    return _SHA_MEMO[memo_key]


def cache_key(meta: dict[str, Any]) -> str:
    """24 hex digits naming a cache file: a digest of everything its contents depend on.

    >>> from mamlkit.data.storage import cache_key
    >>> cache_key({"image_size": 28}) == cache_key({"image_size": 28}), len(cache_key({}))
    (True, 24)
    """
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:24]


def cached(
    path: Path,
    *,
    dataset: str,
    read: Callable[[Path], T],
    decode: Callable[[], T],
    write: Callable[[Path, T], None],
    redo: str,
) -> tuple[T, Path | None, bool]:
    """``read(path)`` if the cache file is there and usable, else ``decode()`` and
    ``write(path, value)``.

    ``read`` raises on anything unusable (then the cache is rebuilt, with a warning); a failure
    to write only warns (every run then decodes again). ``redo`` says what decoding again means
    ("decoding the archives again"). Returns ``(value, the cache file or None when it could not
    be written, whether the value came from the cache)``.
    """
    try:
        present = path.is_file()
    except OSError:  # an unreadable cache folder: decode, and warn below when writing fails
        present = False
    if present:
        try:
            return read(path), path, True
        except Exception as e:  # any failure just means "rebuild": the cache is disposable
            warnings.warn(
                f"ignoring unreadable {dataset} cache file {path} ({type(e).__name__}: {e}); "
                f"{redo}",
                RuntimeWarning,
                stacklevel=4,
            )
    value = decode()
    try:
        write(path, value)
    except OSError as e:
        warnings.warn(
            f"could not write the decoded {dataset} cache {path} ({e}); continuing without it, so "
            f"every run decodes the images again. Point cache_dir / ${CACHE_ENV} at a writable "
            "folder to avoid that",
            RuntimeWarning,
            stacklevel=4,
        )
        return value, None, False
    return value, path, False
