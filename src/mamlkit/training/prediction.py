"""A trained run on a new task of your own images: adapt to labelled support images, classify
query images.

:func:`predict` reads the support folder (one sub-folder of example images per class, named after
the class) and the query folder (images, flat or in class folders) exactly as the run's dataset
read its training images (its :class:`~mamlkit.data.ImageFormat`: the same colour mode, size,
inversion and scaling), adapts the run's learner to the support images with its own algorithm
and inner steps (:meth:`~mamlkit.MetaLearner.adapt`), and returns the class probabilities of
every query image as :class:`Predictions` (what ``mamlkit predict`` prints and saves).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mamlkit.checks import positive_int
from mamlkit.data import DATASETS, ImageFormat, dataset_image_format
from mamlkit.data.folder import check_folder, labelled_images, query_images
from mamlkit.errors import ConfigError
from mamlkit.io import atomic_write_json, load_tensors
from mamlkit.training.build import dataset_options, resolve_device
from mamlkit.training.config import TrainConfig
from mamlkit.training.run_folder import load_run, weights_file
from mamlkit.vocabulary import TaskKind


@dataclass
class Predictions:
    """The class probabilities of query images after adapting a run to support images.

    Attributes:
        run: the run folder.
        weights_file: the weights adapted (``model.safetensors`` or ``model.best.safetensors``).
        inner_steps: the inner steps of the adaptation.
        classes: the class names (the support folder's class folders, sorted); column ``c`` of
            ``probabilities`` is class ``classes[c]``.
        support: the support images of each class (paths relative to the support folder).
        files: the query images (paths relative to the query folder), one row each.
        probabilities: float32 ``[len(files), len(classes)]``, each row summing to 1.
        labels: the true class of each query image when the query folder has class folders,
            else ``None``.

    What :func:`predict` returns; :meth:`to_dict` is what ``mamlkit predict --out`` writes.

    >>> import torch
    >>> from mamlkit.training.prediction import Predictions
    >>> result = Predictions(
    ...     run="runs/x", weights_file="model.safetensors", inner_steps=1, classes=["cat", "dog"],
    ...     support={"cat": ["cat/1.png"], "dog": ["dog/1.png"]}, files=["a.png", "b.png"],
    ...     probabilities=torch.tensor([[0.9, 0.1], [0.3, 0.7]]), labels=["cat", "cat"],
    ... )
    >>> result.predicted, result.accuracy
    (['cat', 'dog'], 0.5)
    >>> print(result.table())
    file   predicted  confidence  true
    a.png  cat             90.0%  cat
    b.png  dog             70.0%  cat
    """

    run: str
    weights_file: str
    inner_steps: int
    classes: list[str]
    support: dict[str, list[str]]
    files: list[str]
    probabilities: Tensor = field(repr=False)
    labels: list[str] | None = None

    @property
    def predicted(self) -> list[str]:
        """The most probable class of each query image."""
        return [self.classes[int(c)] for c in self.probabilities.argmax(dim=1)]

    @property
    def confidence(self) -> list[float]:
        """The probability of each query image's predicted class."""
        return self.probabilities.max(dim=1).values.tolist()

    @property
    def accuracy(self) -> float | None:
        """The share of query images predicted as their true class (``None`` without labels)."""
        if self.labels is None:
            return None
        hits = sum(p == t for p, t in zip(self.predicted, self.labels, strict=True))
        return hits / len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-able data: the run, weights and steps, the classes and support
        images, one record per query image (``file``, ``predicted``, ``confidence``,
        ``probabilities`` by class name, and ``label`` when known) and the ``accuracy``."""
        records = []
        rows = self.probabilities.tolist()
        for i, (name, predicted, row) in enumerate(
            zip(self.files, self.predicted, rows, strict=True)
        ):
            record: dict[str, Any] = {
                "file": name,
                "predicted": predicted,
                "confidence": max(row),
                "probabilities": dict(zip(self.classes, row, strict=True)),
            }
            if self.labels is not None:
                record["label"] = self.labels[i]
            records.append(record)
        return {
            "run": self.run,
            "weights_file": self.weights_file,
            "inner_steps": self.inner_steps,
            "classes": self.classes,
            "support": self.support,
            "predictions": records,
            "accuracy": self.accuracy,
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` (atomically); returns the path."""
        return atomic_write_json(path, self.to_dict())

    def table(self) -> str:
        """One line per query image: file, predicted class, confidence (and the true class)."""
        header = ["file", "predicted", "confidence"]
        rows = [
            [name, predicted, f"{100 * p:.1f}%"]
            for name, predicted, p in zip(self.files, self.predicted, self.confidence, strict=True)
        ]
        if self.labels is not None:
            header.append("true")
            rows = [[*row, label] for row, label in zip(rows, self.labels, strict=True)]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = []
        for row in [header, *rows]:
            cells = [
                cell.rjust(widths[i]) if i == 2 else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: what was adapted to what, and the accuracy when the labels are known."""
        shots = [len(files) for files in self.support.values()]
        per_class = f"{min(shots)}" if min(shots) == max(shots) else f"{min(shots)}-{max(shots)}"
        text = (
            f"{len(self.files)} query images classified into {len(self.classes)} classes after "
            f"{self.inner_steps} inner step{'s' if self.inner_steps != 1 else ''} on "
            f"{per_class} support image{'s' if per_class != '1' else ''} per class "
            f"({self.weights_file} of {self.run})"
        )
        accuracy = self.accuracy
        if accuracy is not None:
            hits = round(accuracy * len(self.files))
            text += f"; accuracy {100 * accuracy:.2f}% ({hits} of {len(self.files)})"
        return text


def run_image_format(config: TrainConfig, image_shape: tuple[int, ...]) -> ImageFormat:
    """How the dataset of a run read its images (:func:`mamlkit.data.dataset_image_format` with
    the run's dataset options), checked against the input shape its weights were trained on."""
    fmt = dataset_image_format(DATASETS.get(config.dataset), dataset_options(config))
    if fmt is None:
        image_sets = [n for n in DATASETS if dataset_image_format(DATASETS.get(n), {}) is not None]
        raise ConfigError(
            f"dataset {config.dataset!r} does not say how it reads image files (its factory is "
            f"not marked with mamlkit.data.reads_images), so its runs cannot classify new images; "
            f"predict works with runs of {', '.join(image_sets)}"
        )
    if fmt.shape != tuple(image_shape):
        raise ValueError(
            f"dataset {config.dataset!r} reads images as {list(fmt.shape)}, but the run was "
            f"trained on inputs {list(image_shape)}; was its config.yaml edited?"
        )
    return fmt


def predict(
    run_dir: str | Path,
    support_dir: str | Path,
    query_dir: str | Path,
    *,
    weights: str = "auto",
    inner_steps: int | None = None,
    device: str | None = None,
    query_batch: int | None = None,
) -> Predictions:
    """Adapt the run in ``run_dir`` to the support images, then classify the query images.

    Args:
        run_dir: a folder written by ``mamlkit train`` (an image classification run).
        support_dir: one sub-folder per class, named after the class, holding K >= 1 example
            images of it; as many classes as the run's ``ways`` (its model has that many
            outputs).
        query_dir: the images to classify, directly in it or sorted into folders named after
            support classes (then :attr:`Predictions.accuracy` scores the predictions).
        weights: ``auto`` (the best weights when the run kept them, else the final ones, as
            ``mamlkit eval``), ``best`` or ``final``.
        inner_steps: inner steps of the adaptation (default: the run's).
        device: where to adapt (default: the run's device).
        query_batch: query images classified together (default: the run's ``ways * queries``,
            the size of a training query set). With batch statistics in BatchNorm (Conv4 in
            MAML) a query image's prediction depends on the images it is batched with, as in
            evaluation; the images are batched in file order.

    Every image is read with the run's dataset's preprocessing (:func:`run_image_format`).
    Problems with the folders (no class folders, a class count other than ``ways``, an empty
    folder, a file that is not an image) are errors naming the folder or file and the fix.

    >>> from mamlkit import predict
    >>> result = predict("runs/x", "my-task/support", "my-task/query")  # doctest: +SKIP
    >>> result.predicted[:2], result.accuracy  # doctest: +SKIP
    (['cat', 'owl'], None)
    """
    run_dir = Path(run_dir)
    used = weights_file(run_dir, weights)
    config, learner = load_run(run_dir, weights=weights)
    if learner.task != TaskKind.CLASSIFICATION:
        raise ConfigError(
            f"{run_dir} is a {learner.task} run (dataset {config.dataset!r}); predict classifies "
            f"images with a run trained on image classes"
        )
    image_shape = tuple(json.loads(load_tensors(used)[1]["image_shape"]))
    fmt = run_image_format(config, image_shape)
    support_root = check_folder(support_dir, "support folder")
    support = labelled_images(support_root, "support folder")
    if len(support) != config.ways:
        raise ConfigError(
            f"the support folder {support_root} has {len(support)} class folders, but the run "
            f"{run_dir} was trained for {config.ways}-way tasks (its model has {config.ways} "
            f"outputs): give exactly {config.ways} classes"
        )
    classes = list(support)
    query_root = check_folder(query_dir, "query folder")
    files, labels = query_images(query_root, "query folder")
    if labels is not None:
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ConfigError(
                f"the query folder {query_root} has a class folder {unknown[0]!r} that the "
                f"support folder lacks; name its class folders after the support classes: "
                f"{', '.join(classes)}"
            )
    steps = learner.inner_steps if inner_steps is None else positive_int("inner_steps", inner_steps)
    batch = config.ways * config.queries if query_batch is None else query_batch
    batch = positive_int("query_batch", batch)

    support_files = [path for paths in support.values() for path in paths]
    support_x = fmt.load(support_files)
    support_y = torch.tensor([c for c, paths in enumerate(support.values()) for _ in paths])
    query_x = fmt.load(files)
    target = resolve_device(device or config.device)
    learner.to(target).eval()
    with torch.no_grad():
        adapted = learner.adapt(support_x[None].to(target), support_y[None].to(target), steps=steps)
        logits = torch.cat([adapted(chunk[None].to(target))[0] for chunk in query_x.split(batch)])
    return Predictions(
        run=str(run_dir),
        weights_file=used.name,
        inner_steps=steps,
        classes=classes,
        support={
            name: [p.relative_to(support_root).as_posix() for p in paths]
            for name, paths in support.items()
        },
        files=[p.relative_to(query_root).as_posix() for p in files],
        probabilities=logits.float().softmax(dim=1).cpu(),
        labels=labels,
    )
