"""Data layer: few-shot datasets (by name in :data:`DATASETS`) and the episode sampler.

Importing this package is cheap: images are only decoded when a dataset is constructed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mamlkit.data.download import ChecksumError, DownloadError, download_omniglot
from mamlkit.data.omniglot import (
    Omniglot,
    OmniglotArchiveError,
    resolve_cache_dir,
    resolve_data_root,
    split_characters,
)
from mamlkit.data.sampler import Episode, EpisodeSampler, FewShotDataset
from mamlkit.registry import Registry

#: Dataset factories by name: ``DATASETS.get(name)(root, split, download=..., **options)``.
DATASETS: Registry[Callable[..., FewShotDataset]] = Registry("dataset")


@DATASETS.register("omniglot")
def make_omniglot(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = False,
    **options: Any,
) -> Omniglot:
    """The Omniglot split ``split``; ``options`` go to :class:`Omniglot` (validation, rotations,
    image_size, cache_dir, split_seed)."""
    return Omniglot(root, split, download=download, **options)


__all__ = [
    "DATASETS",
    "ChecksumError",
    "DownloadError",
    "Episode",
    "EpisodeSampler",
    "FewShotDataset",
    "Omniglot",
    "OmniglotArchiveError",
    "download_omniglot",
    "make_omniglot",
    "resolve_cache_dir",
    "resolve_data_root",
    "split_characters",
]
