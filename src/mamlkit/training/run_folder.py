"""The run folder: what a training run writes, and how a trained learner is rebuilt from it.

``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON record per logged iteration,
and one per validation evaluation), ``model.safetensors`` (the learner's state at the end: model
weights, learned inner learning rates, per-step tables), ``model.best.safetensors`` (with
``--validation``: the state that scored best on the validation tasks),
``checkpoint.safetensors`` (everything to resume exactly, see
:mod:`mamlkit.training.checkpoints`), ``summary.json`` (written at the end), and ``eval.json``
after ``mamlkit eval`` (for a regression dataset such as ``sinusoid`` also ``fits.png``). With
``--logger csv`` also ``metrics.csv`` and ``validation.csv``, with ``--logger tensorboard`` the
event files in ``tensorboard/`` (see :mod:`mamlkit.training.loggers`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mamlkit.errors import ConfigError
from mamlkit.io import atomic_write_text, load_tensors, save_tensors
from mamlkit.learner import MetaLearner
from mamlkit.training.build import build_learner
from mamlkit.training.checkpoints import CHECKPOINT_FILE
from mamlkit.training.config import TrainConfig, build_config, load_yaml
from mamlkit.training.fits import FITS_FILE
from mamlkit.vocabulary import TaskKind

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_FILE = "model.safetensors"
BEST_WEIGHTS_FILE = "model.best.safetensors"
SUMMARY_FILE = "summary.json"
EVAL_FILE = "eval.json"
METRICS_CSV_FILE = "metrics.csv"
VALIDATION_CSV_FILE = "validation.csv"
#: The folder of the TensorBoard event files (``tensorboard --logdir`` finds them below it).
TENSORBOARD_DIR = "tensorboard"
#: The name pattern of TensorBoard's event files.
EVENT_FILES = "events.out.tfevents.*"
#: Every file a run writes (``--overwrite`` deletes these and nothing else).
RUN_FILES = (
    WEIGHTS_FILE,
    BEST_WEIGHTS_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    EVAL_FILE,
    FITS_FILE,
    CONFIG_FILE,
    CHECKPOINT_FILE,
    METRICS_CSV_FILE,
    VALIDATION_CSV_FILE,
)
WEIGHTS_FORMAT = "mamlkit-learner-v1"


def save_learner(
    path: Path,
    learner: MetaLearner,
    config: TrainConfig,
    image_shape: tuple[int, ...],
    *,
    num_outputs: int | None = None,
    facts: dict[str, Any] | None = None,
) -> None:
    """The learner's state (weights + learned inner LRs) as safetensors, with what rebuilds it
    (``num_outputs``: the model's outputs when they are not ``config.ways``) and ``facts``
    about these weights (e.g. the iteration and validation score of the best ones)."""
    metadata = {
        "format": WEIGHTS_FORMAT,
        "algorithm": learner.algorithm.name,
        "image_shape": json.dumps(list(image_shape)),
        "config": json.dumps(config.to_dict()),
        "task": learner.task.value,
    }
    if num_outputs is not None:
        metadata["num_outputs"] = str(num_outputs)
    if facts is not None:
        metadata["facts"] = json.dumps(facts)
    save_tensors(path, learner.state_dict(), metadata)


#: Which weights of a run ``mamlkit eval`` tests: the validation's best when the run kept them
#: (``auto``), or by name.
WEIGHTS_CHOICES = ("auto", "best", "final")


def weights_file(run_dir: str | Path, weights: str = "auto") -> Path:
    """The weights file of a run that ``weights`` names: ``final`` (``model.safetensors``),
    ``best`` (``model.best.safetensors``, kept by a run with ``--validation``), or ``auto``:
    the best when they exist, else the final ones."""
    run_dir = Path(run_dir)
    if weights not in WEIGHTS_CHOICES:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHTS_CHOICES)}, got {weights!r}")
    best = run_dir / BEST_WEIGHTS_FILE
    if weights == "best" and not best.is_file():
        raise ConfigError(
            f"{run_dir} has no {BEST_WEIGHTS_FILE}: only a run trained with --validation keeps "
            "its best weights; evaluate the final ones with --weights final"
        )
    if weights == "best" or (weights == "auto" and best.is_file()):
        return best
    return run_dir / WEIGHTS_FILE


def weights_facts(path: Path) -> dict[str, Any]:
    """What a weights file records about itself (``{}`` for the final weights)."""
    _, metadata = load_tensors(path)
    return json.loads(metadata.get("facts", "{}"))


def prepare_out_dir(out: str | Path, overwrite: bool) -> Path:
    """Create the run folder ``out``, or clear the files of an earlier run in it.

    A folder that already holds a run is refused unless ``overwrite``; then only the files a
    run writes, its TensorBoard event files included, are deleted (anything else there is
    kept). Returns ``out`` as a ``Path``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the run")
    if any((out / name).exists() for name in (WEIGHTS_FILE, METRICS_FILE, CHECKPOINT_FILE)):
        if not overwrite:
            raise ConfigError(
                f"{out} already holds a run; choose another --out, pass --overwrite, or continue "
                f"it with mamlkit train --resume {out}"
            )
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        for events in (out / TENSORBOARD_DIR).glob(EVENT_FILES):
            events.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def records_up_to(path: Path, iteration: int) -> list[dict[str, Any]]:
    """The metrics records of iterations ``<= iteration``; the file is rewritten to hold only
    them (a run stopped after its checkpoint logged iterations that resuming redoes)."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [json.loads(line) for line in lines if line.strip()]
    kept = [record for record in kept if record["iteration"] <= iteration]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
    return kept


def load_config(run_dir: str | Path) -> TrainConfig:
    """The config a run folder was trained with (its ``config.yaml``), checked like any config;
    a folder that is not a run is an error naming what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder at {run_dir}")
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {CONFIG_FILE}; is it a folder written by mamlkit train?"
        )
    return build_config(TrainConfig, load_yaml(run_dir / CONFIG_FILE))


def load_run(
    run_dir: str | Path,
    *,
    device: torch.device | None = None,
    weights: str = "final",
    config: TrainConfig | None = None,
) -> tuple[TrainConfig, MetaLearner]:
    """Rebuild the config and the trained learner of a run folder.

    The learner is built from ``config.yaml`` and the shape and task recorded in its weights
    file (``weights``: see :func:`weights_file`; by default the final ``model.safetensors``),
    then loaded strictly; a folder that is not a run, or weights that do not fit the config,
    are errors naming the file. ``device``: where to move the learner. ``config`` replaces
    ``config.yaml`` (e.g. the run's own with another fixed inner learning rate, as
    :func:`~mamlkit.training.eval_run` builds it for ``--inner-lr``).
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir) if config is None else config
    path = weights_file(run_dir, weights)
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path} is not a mamlkit learner file")
    if metadata.get("algorithm") != config.algorithm:
        raise ValueError(
            f"{path} holds a {metadata.get('algorithm')!r} learner but "
            f"{CONFIG_FILE} says {config.algorithm!r}"
        )
    image_shape = tuple(json.loads(metadata.get("image_shape", "[]")))
    if not image_shape:
        raise ValueError(f"{path} does not record the input shape it was trained on")
    task = TaskKind.parse(metadata.get("task", TaskKind.CLASSIFICATION.value))
    outputs = metadata.get("num_outputs")
    learner = build_learner(
        config, image_shape, task=task, num_outputs=int(outputs) if outputs else None
    )
    try:
        learner.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit the configured model: {error}") from None
    if device is not None:
        learner.to(device)
    return config, learner
