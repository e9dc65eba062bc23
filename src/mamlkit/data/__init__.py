"""Data layer: few-shot datasets (by name in :data:`DATASETS`) and the episode sampler.

Importing this package is cheap: images are only decoded when a dataset is constructed.

>>> from mamlkit.data import DATASETS
>>> DATASETS.names()
['cifar-fs', 'fc100', 'folder', 'miniimagenet', 'omniglot', 'sinusoid']
>>> DATASETS.get("sinusoid")(split="test")
Sinusoid(split='test', amplitude=(0.1, 5.0), phase=(0.0, 3.14159...), x_range=(-5.0, 5.0))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mamlkit.data import cifar, folder, miniimagenet, omniglot
from mamlkit.data.cifar import CifarArchiveError, CifarFewShot, download_cifar100
from mamlkit.data.download import ChecksumError, DownloadError, download_omniglot
from mamlkit.data.folder import ImageFolder, ImageFolderError, split_classes
from mamlkit.data.images import ImageFileError, ImageFormat, dataset_image_format, reads_images
from mamlkit.data.miniimagenet import MiniImageNet, MiniImageNetError
from mamlkit.data.omniglot import (
    Omniglot,
    OmniglotArchiveError,
    lake_split_characters,
    split_characters,
)
from mamlkit.data.sampler import EpisodeSampler, FewShotDataset
from mamlkit.data.sinusoid import Sinusoid, SinusoidSampler, SinusoidTasks, TaskDistribution
from mamlkit.data.storage import resolve_cache_dir, resolve_data_root
from mamlkit.episodes import Episode
from mamlkit.registry import PluginError, Registry


def _plugin_factory(name: str, obj: object) -> Callable[..., Any]:
    """A plug-in dataset (entry point or ``module:attribute``) must be a factory to call."""
    if not callable(obj):
        raise PluginError(f"dataset {name!r} is a {type(obj).__name__}, not a dataset factory")
    return obj  # type: ignore[return-value]


#: Dataset factories by name: ``DATASETS.get(name)(root, split, download=..., **options)``. A
#: classification factory gives a :class:`FewShotDataset` for :class:`EpisodeSampler`; a factory
#: whose ``task`` is regression (``sinusoid``) gives a :class:`TaskDistribution`, which makes its
#: own sampler with ``task_sampler(shots, queries, meta_batch, seed=...)``. Installed packages
#: add theirs through the ``mamlkit.datasets`` entry point group, and
#: ``package.module:factory`` names one directly.
DATASETS: Registry[Callable[..., Any]] = Registry(
    "dataset", entry_points="mamlkit.datasets", check=_plugin_factory
)


@DATASETS.register("omniglot")
@reads_images(omniglot.image_format)
def make_omniglot(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = False,
    validation: bool = False,
    split_seed: int = 0,
    progress: bool = True,
    split_protocol: str = "vinyals",
    image_size: int = 28,
    **options: Any,
) -> Omniglot:
    """The Omniglot split ``split``; ``options`` go to :class:`Omniglot` (rotations,
    cache_dir); ``progress``: a progress bar while downloading; ``split_protocol``: "vinyals"
    (the default) or "lake" (Lake et al.'s background / evaluation alphabets); ``image_size``:
    the side of the resized drawings.

    The ``omniglot`` entry of :data:`DATASETS` (what ``--dataset omniglot`` builds).
    """
    return Omniglot(
        root,
        split,
        download=download,
        validation=validation,
        split_seed=split_seed,
        progress=progress,
        split_protocol=split_protocol,
        image_size=image_size,
        **options,
    )


@DATASETS.register("miniimagenet")
@reads_images(miniimagenet.image_format)
def make_miniimagenet(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = False,
    image_size: int = 84,
    normalize: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> MiniImageNet:
    """The mini-ImageNet split ``split`` (Ravi & Larochelle); it cannot be downloaded.

    The ``miniimagenet`` entry of :data:`DATASETS`; the arguments are those of
    :class:`MiniImageNet`.
    """
    return MiniImageNet(
        root,
        split,
        download=download,
        image_size=image_size,
        normalize=normalize,
        cache_dir=cache_dir,
        progress=progress,
    )


@DATASETS.register("folder")
@reads_images(folder.image_format)
def make_folder(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = False,
    split_seed: int = 0,
    image_size: int | None = None,
    channels: str = "rgb",
    progress: bool = False,
) -> ImageFolder:
    """The split ``split`` of your own images in ``root`` (one sub-folder per class, or
    train/, val/ and test/ folders of them).

    The ``folder`` entry of :data:`DATASETS` (what ``--dataset folder --data-root DIR`` builds);
    the arguments are those of :class:`ImageFolder`.
    """
    return ImageFolder(
        root,
        split,
        download=download,
        split_seed=split_seed,
        image_size=image_size,
        channels=channels,
        progress=progress,
    )


@DATASETS.register("cifar-fs")
@reads_images(cifar.image_format)
def make_cifar_fs(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = False,
    progress: bool = True,
) -> CifarFewShot:
    """CIFAR-FS (Bertinetto et al. 2019): CIFAR-100's classes split 64 / 16 / 20, 32x32 RGB.

    The ``cifar-fs`` entry of :data:`DATASETS`; reads ``<root>/cifar100/cifar-100-binary.tar.gz``
    (see :class:`CifarFewShot`).
    """
    return CifarFewShot("cifar-fs", root, split, download=download, progress=progress)


@DATASETS.register("fc100")
@reads_images(cifar.image_format)
def make_fc100(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = False,
    progress: bool = True,
) -> CifarFewShot:
    """FC100 (Oreshkin et al. 2018): CIFAR-100 split by superclass, 60 / 20 / 20 classes, 32x32 RGB.

    The ``fc100`` entry of :data:`DATASETS`; reads ``<root>/cifar100/cifar-100-binary.tar.gz``
    (see :class:`CifarFewShot`).
    """
    return CifarFewShot("fc100", root, split, download=download, progress=progress)


#: Sinusoid regression (Finn et al. 2017, section 5.1); generated on the fly, nothing to download.
DATASETS.add("sinusoid", Sinusoid)

__all__ = [
    "DATASETS",
    "ChecksumError",
    "CifarArchiveError",
    "CifarFewShot",
    "DownloadError",
    "Episode",
    "EpisodeSampler",
    "FewShotDataset",
    "ImageFileError",
    "ImageFolder",
    "ImageFolderError",
    "ImageFormat",
    "MiniImageNet",
    "MiniImageNetError",
    "Omniglot",
    "OmniglotArchiveError",
    "Sinusoid",
    "SinusoidSampler",
    "SinusoidTasks",
    "TaskDistribution",
    "dataset_image_format",
    "download_cifar100",
    "download_omniglot",
    "lake_split_characters",
    "make_cifar_fs",
    "make_fc100",
    "make_folder",
    "make_miniimagenet",
    "make_omniglot",
    "reads_images",
    "resolve_cache_dir",
    "resolve_data_root",
    "split_characters",
    "split_classes",
]
