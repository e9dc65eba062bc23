"""Building a run from its config: the device, the dataset, the task stream, the learner and the
outer learning-rate schedule.

Every name in a :class:`~mamlkit.training.TrainConfig` is looked up in its registry (so a
plug-in's entry point or a ``module:attribute`` reference works like a built-in name). A dataset
whose ``task`` is regression (a :class:`~mamlkit.data.TaskDistribution`) makes its own sampler
and trains a ``MetaLearner(..., task="regression")`` with one model output per target
(``num_outputs``); ``ways`` does not apply to it and must be left at its default.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch

from mamlkit.algorithms import resolve_algorithm
from mamlkit.algorithms.hooks import known_options
from mamlkit.data import DATASETS, EpisodeSampler, TaskDistribution
from mamlkit.data.augment import augmentation
from mamlkit.errors import ConfigError
from mamlkit.learner import MetaLearner
from mamlkit.models import MODELS, parse_model
from mamlkit.training.config import TrainConfig
from mamlkit.training.schedules import chosen_schedule, outer_lr_scheduler
from mamlkit.vocabulary import TaskKind


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; an unavailable CUDA device is an error.

    >>> from mamlkit.training import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("gpu")
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: unknown device 'gpu'; use cpu, cuda, cuda:N or auto
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def build_dataset(config: TrainConfig, split: str) -> Any:
    """The dataset ``config.dataset`` for ``split``.

    Every factory gets ``root``, ``split`` and ``download``; ``validation`` and ``split_seed`` go
    to factories that take them, and setting them for one that does not is an error (never a
    silently ignored flag). ``omniglot_split`` goes to a factory that takes ``split_protocol``
    (Omniglot's); another value than the default is refused for any other dataset.

    >>> from mamlkit.training import TrainConfig, build_dataset
    >>> build_dataset(TrainConfig(dataset="sinusoid", model="mlp"), "test")
    Sinusoid(split='test', amplitude=(0.1, 5.0), phase=(0.0, 3.14159...), x_range=(-5.0, 5.0))
    >>> build_dataset(TrainConfig(dataset="sinusoid", model="mlp", split_seed=1), "test")
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: dataset 'sinusoid' has fixed splits: split_seed cannot be set
    (got 1)

    ``validation`` is passed to a dataset that carves its validation split out of the others
    (Omniglot); one with a fixed validation split of its own (mini-ImageNet, sinusoid) just has
    it evaluated. The dataset options ``image_size`` and ``channels`` (:func:`dataset_options`)
    go to a factory that takes them, and are refused (when set) by one that does not.
    """
    factory = DATASETS.get(config.dataset)
    accepted = inspect.signature(factory).parameters
    defaults = {"validation": False, "split_seed": 0}
    options = {}
    for key, default in defaults.items():
        value = getattr(config, key)
        if key in accepted:
            options[key] = value
        elif value != default and key != "validation":
            raise ConfigError(
                f"dataset {config.dataset!r} has fixed splits: {key} cannot be set (got {value!r})"
            )
    if "split_protocol" in accepted:
        options["split_protocol"] = config.omniglot_split
    elif config.omniglot_split != _default(TrainConfig, "omniglot_split"):
        raise ConfigError(
            f"--omniglot-split {config.omniglot_split} applies only to omniglot: dataset "
            f"{config.dataset!r} has its own class split (leave omniglot_split at "
            f"{_default(TrainConfig, 'omniglot_split')})"
        )
    for key, value in dataset_options(config).items():
        if key not in accepted:
            raise ConfigError(
                f"dataset {config.dataset!r} takes no {key} option (got --{key.replace('_', '-')} "
                f"{value}); leave it unset"
            )
        options[key] = value
    if "progress" in accepted:
        options["progress"] = config.progress
    return factory(root=config.data_root, split=split, download=config.download, **options)


#: The config keys that are options of the dataset itself (how it decodes its images): passed
#: to a factory that takes them when set, refused by one that does not.
DATASET_OPTIONS: tuple[str, ...] = ("image_size", "channels")


def dataset_options(config: TrainConfig) -> dict[str, Any]:
    """The dataset options (:data:`DATASET_OPTIONS`) of ``config`` that are set.

    >>> from mamlkit.training import TrainConfig
    >>> from mamlkit.training.build import dataset_options
    >>> dataset_options(TrainConfig(dataset="folder", channels="grayscale"))
    {'channels': 'grayscale'}
    """
    values = {key: getattr(config, key) for key in DATASET_OPTIONS}
    return {key: value for key, value in values.items() if value is not None}


def dataset_task(dataset: Any) -> TaskKind:
    """Regression for a :class:`~mamlkit.data.TaskDistribution` of regression tasks, else
    classification (an N-way dataset for :class:`~mamlkit.data.EpisodeSampler`)."""
    if isinstance(dataset, TaskDistribution) and dataset.task == TaskKind.REGRESSION:
        return TaskKind.REGRESSION
    return TaskKind.CLASSIFICATION


def registered_task(name: str) -> TaskKind:
    """The task of the registered dataset ``name``, without building it (the factory's ``task``
    attribute; factories without one are classification).

    >>> from mamlkit.training.build import registered_task
    >>> str(registered_task("sinusoid")), str(registered_task("omniglot"))
    ('regression', 'classification')
    """
    return TaskKind.parse(getattr(DATASETS.get(name), "task", TaskKind.CLASSIFICATION))


def _default(cls: type, key: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == key)


def build_sampler(
    config: TrainConfig,
    dataset: Any,
    *,
    queries: int,
    meta_batch: int,
    seed: int,
    augment: bool = False,
) -> Any:
    """The task stream of ``dataset``: an :class:`~mamlkit.data.EpisodeSampler` of ``ways``-way
    tasks, or for a regression dataset its own ``task_sampler`` (then ``ways`` and ``episodes``
    must be left at their defaults: they do not apply, and are refused rather than ignored).
    ``episodes`` decides how a task's classes are drawn (:func:`episode_grouping`). A dataset
    with a ``check_tasks(ways, shots, queries)`` method (the folder dataset) refuses tasks it
    cannot give first, in its own words (naming the class that is too small).

    ``augment``: this is the training task stream, whose images ``config.augment`` transforms
    (:func:`episode_augmentation`); validation and test streams leave it ``False``."""
    if dataset_task(dataset) == TaskKind.REGRESSION:
        if config.augment is not None:
            raise ConfigError(
                f"{config.dataset} is a regression dataset: --augment transforms images and does "
                f"not apply (got {config.augment}); leave it unset"
            )
        if config.ways != _default(TrainConfig, "ways"):
            raise ConfigError(
                f"{config.dataset} is a regression dataset: --ways does not apply (got "
                f"{config.ways}); leave it unset and give the points per task with --shots"
            )
        if config.episodes != _default(TrainConfig, "episodes"):
            raise ConfigError(
                f"{config.dataset} is a regression dataset: --episodes does not apply (got "
                f"{config.episodes}); leave it unset"
            )
        return dataset.task_sampler(config.shots, queries, meta_batch, seed=seed)
    grouping = episode_grouping(config, dataset)
    check_tasks = getattr(dataset, "check_tasks", None)
    if callable(check_tasks):  # the dataset's own words for tasks it cannot give
        check_tasks(config.ways, config.shots, queries)
    transforms = episode_augmentation(config, dataset) if augment else {}
    return EpisodeSampler(
        dataset, config.ways, config.shots, queries, meta_batch, seed=seed, **grouping, **transforms
    )


def episode_augmentation(config: TrainConfig, dataset: Any) -> dict[str, Any]:
    """The :class:`~mamlkit.data.EpisodeSampler` transforms of ``config.augment`` (the built-in
    augmentations of :mod:`mamlkit.data.augment`), as ``support_transform`` and / or
    ``query_transform`` as ``config.augment_sets`` says; none without ``augment``. Images must
    be ``[C, H, W]``.

    >>> from mamlkit.training import TrainConfig
    >>> from mamlkit.training.build import episode_augmentation
    >>> class Images:
    ...     image_shape = (3, 32, 32)
    >>> episode_augmentation(TrainConfig(augment="flip", augment_sets="query"), Images())
    {'query_transform': Compose(RandomHorizontalFlip(p=0.5))}
    """
    transform = augmentation(config.augment)
    if transform is None:
        return {}
    shape = tuple(getattr(dataset, "image_shape", ()))
    if len(shape) != 3:
        raise ConfigError(
            f"--augment transforms images [C, H, W], but dataset {config.dataset!r} gives inputs "
            f"of shape {list(shape)}; leave --augment unset"
        )
    sets = config.augment_sets.split(",")
    return {f"{what}_transform": transform for what in ("support", "query") if what in sets}


def episode_grouping(config: TrainConfig, dataset: Any) -> dict[str, Any]:
    """The :class:`~mamlkit.data.EpisodeSampler` options for ``config.episodes``: none for
    ``any``; for ``within_alphabet`` the dataset's ``class_alphabets`` as groups and its
    ``class_characters`` (when it has them) as sources, so each task holds N distinct characters
    of one alphabet. A dataset without ``class_alphabets`` is refused.

    >>> from mamlkit.training import TrainConfig
    >>> from mamlkit.training.build import episode_grouping
    >>> episode_grouping(TrainConfig(), object())
    {}
    >>> episode_grouping(TrainConfig(dataset="miniimagenet", episodes="within_alphabet"), object())
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: --episodes within_alphabet needs a dataset whose classes belong to
    alphabets (a class_alphabets attribute, as omniglot has); dataset 'miniimagenet' has none
    """
    if config.episodes == "any":
        return {}
    alphabets = getattr(dataset, "class_alphabets", None)
    if alphabets is None:
        raise ConfigError(
            f"--episodes {config.episodes} needs a dataset whose classes belong to alphabets (a "
            f"class_alphabets attribute, as omniglot has); dataset {config.dataset!r} has none"
        )
    return {"groups": alphabets, "sources": getattr(dataset, "class_characters", None)}


def build_learner(
    config: TrainConfig,
    image_shape: tuple[int, ...],
    *,
    task: TaskKind | str = TaskKind.CLASSIFICATION,
    num_outputs: int | None = None,
) -> MetaLearner:
    """The model (initialised from ``config.seed`` without touching the global RNG) + algorithm.

    An image shape ``[C, H, W]`` is passed to the model factory as ``in_channels=C,
    image_size=W``; a model that declares ``input_ndim`` refuses inputs of another rank. The
    model gets ``num_outputs`` outputs (default ``config.ways``, one logit per class); ``task``
    is the learner's (regression: float targets, MSE loss). What the algorithm needs of the model
    (e.g. BatchNorm with running statistics for MAML++'s per-step statistics) is passed to a
    factory that takes it.

    >>> from mamlkit.training import TrainConfig, build_learner
    >>> learner = build_learner(TrainConfig(model="conv4", ways=20), (1, 28, 28))
    >>> learner.model.head.out_features, learner.algorithm.name
    (20, 'maml')
    >>> build_learner(TrainConfig(model="conv4", dataset="sinusoid"), (1,))
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: model 'conv4' takes inputs of rank 3 but dataset 'sinusoid' gives
    inputs of shape [1]; choose another --model, e.g. --model mlp
    """
    factory, chosen = parse_model(config.model)
    input_ndim = getattr(factory, "input_ndim", None)
    if input_ndim is not None and len(image_shape) != input_ndim:
        fitting = [
            name
            for name in MODELS
            if getattr(MODELS.get(name), "input_ndim", None) in (None, len(image_shape))
        ]
        hint = f", e.g. --model {fitting[0]}" if fitting else ""
        raise ConfigError(
            f"model {config.model!r} takes inputs of rank {input_ndim} but dataset "
            f"{config.dataset!r} gives inputs of shape {list(image_shape)}; choose another "
            f"--model{hint}"
        )
    spec = resolve_algorithm(config.algorithm)
    algorithm = algorithm_options(config)
    accepted = inspect.signature(factory).parameters
    needs = spec.hooks(**algorithm).model_options()
    options = {**chosen, **{k: v for k, v in needs.items() if k in accepted}}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = factory(
            in_channels=image_shape[0],
            num_classes=config.ways if num_outputs is None else num_outputs,
            hidden=config.hidden,
            image_size=image_shape[-1],
            **options,
        )
    return MetaLearner(
        model,
        spec,
        inner_lr=config.inner_lr,
        inner_steps=config.inner_steps,
        execution=config.execution,
        tasks_per_backward=config.tasks_per_backward,
        task=task,
        **algorithm,
    )


def algorithm_options(config: TrainConfig) -> dict[str, Any]:
    """The config's values of the options that algorithm components take (e.g. MAML++'s
    annealing lengths); each algorithm uses those of its own components.

    >>> from mamlkit.training import TrainConfig
    >>> from mamlkit.training.build import algorithm_options
    >>> algorithm_options(TrainConfig(msl_anneal_iterations=100))["msl_anneal_iterations"]
    100
    """
    return {name: getattr(config, name) for name in known_options() if hasattr(config, name)}


def outer_lr_schedule(config: TrainConfig) -> str:
    """The schedule a run uses: the config's, else its algorithm's default.

    >>> from mamlkit.training import TrainConfig
    >>> from mamlkit.training.build import outer_lr_schedule
    >>> outer_lr_schedule(TrainConfig(algorithm="mamlpp")), outer_lr_schedule(TrainConfig())
    ('cosine', 'constant')
    >>> outer_lr_schedule(TrainConfig(algorithm="maml", outer_lr_schedule="cosine"))
    'cosine'
    """
    return chosen_schedule(resolve_algorithm(config.algorithm), config.outer_lr_schedule)


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The outer learning-rate schedule: constant, or cosine annealing to ``outer_lr_min`` over
    ``iterations`` (``outer_lr_schedule`` unset: the algorithm's own, cosine for the MAML++
    presets). Built by :func:`~mamlkit.training.schedules.outer_lr_scheduler`, as
    :func:`~mamlkit.train_maml` builds its schedule."""
    return outer_lr_scheduler(
        optimizer,
        outer_lr_schedule(config),
        iterations=config.iterations,
        lr_min=config.outer_lr_min,
    )
