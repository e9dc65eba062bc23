"""Training checkpoints: everything a run needs to continue exactly where it stopped.

One ``checkpoint.safetensors`` file holds the tensors (the learner's state: weights, learned
inner rates and per-step tables; the outer optimiser's moments; torch's RNG state) and, in its
JSON metadata, the rest (iteration, training time, optimiser hyper-parameters, LR scheduler,
episode sampler, Python and NumPy RNG states). It is written atomically (temp file + rename), so
a crash leaves the previous checkpoint intact, and loading never runs code: safetensors for
tensors, JSON for everything else, no pickle.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mamlkit.io import load_tensors, save_tensors

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "mamlkit-checkpoint-v1"


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": pos, "gauss": [has_gauss, cached]}


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = np.asarray(state["keys"], dtype=np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], *state["gauss"]))


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_state(state: list[Any]) -> None:
    version, internal, gauss = state
    random.setstate((version, tuple(internal), gauss))


@dataclass
class TrainingState:
    """The objects of a run whose state a checkpoint holds (built fresh, then restored).

    Attributes:
        learner: the :class:`~mamlkit.MetaLearner` (its ``state_dict``).
        algorithm: the run's algorithm name; a checkpoint of another algorithm is refused.
        optimizer: the outer optimiser (e.g. Adam: its moments and step counts).
        scheduler: the outer learning-rate scheduler, or ``None``.
        sampler: the task stream (a sampler with ``state_dict`` / ``load_state_dict``).

    A round trip (in a temporary folder):

    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> from mamlkit import MetaLearner
    >>> from mamlkit.training.checkpoints import TrainingState, load_checkpoint, save_checkpoint
    >>> from mamlkit.data import SinusoidSampler
    >>> from mamlkit.models import MLP
    >>> def build(hidden=40):
    ...     learner = MetaLearner(MLP(hidden=hidden), "maml", inner_lr=0.01, task="regression")
    ...     optimizer = torch.optim.Adam(learner.parameters())
    ...     return TrainingState(learner, "maml", optimizer, None, SinusoidSampler(5, 5, 2))
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "checkpoint.safetensors"
    >>> _ = save_checkpoint(path, build(), iteration=7, train_seconds=1.5, run={"note": "x"})
    >>> load_checkpoint(path, build())  # iterations done, training seconds, run facts
    (7, 1.5, {'note': 'x'})
    >>> load_checkpoint(path, build(hidden=8))
    Traceback (most recent call last):
        ...
    ValueError: ...checkpoint.safetensors does not fit this run's learner: shapes differ: ...
    >>> folder.cleanup()
    """

    learner: torch.nn.Module
    algorithm: str
    optimizer: torch.optim.Optimizer
    scheduler: Any  # an LR scheduler or None
    sampler: Any  # a SeededStream: state_dict() / load_state_dict()


def save_checkpoint(
    path: str | Path,
    state: TrainingState,
    *,
    iteration: int,
    train_seconds: float,
    run: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of a run after ``iteration`` completed outer iterations (``run``:
    JSON-able facts about the run to carry across a resume, e.g. its initial-weights digest).

    The file is replaced atomically; returns its path. See :class:`TrainingState` for an
    example."""
    learner, optimizer, scheduler, sampler = (
        state.learner, state.optimizer, state.scheduler, state.sampler
    )  # fmt: skip
    tensors = {f"learner/{k}": v for k, v in learner.state_dict().items()}
    optim = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optim["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng/torch"] = torch.get_rng_state()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "algorithm": state.algorithm,
        "iteration": str(iteration),
        "train_seconds": repr(train_seconds),
        "optimizer_param_groups": json.dumps(optim["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
        "scheduler": json.dumps(scheduler.state_dict() if scheduler is not None else None),
        "sampler": json.dumps(sampler.state_dict()),
        "rng_numpy": json.dumps(_numpy_state()),
        "rng_python": json.dumps(_python_state()),
        "run": json.dumps(run or {}),
    }
    return save_tensors(path, tensors, metadata)


def load_checkpoint(
    path: str | Path, run_state: TrainingState
) -> tuple[int, float, dict[str, Any]]:
    """Restore a checkpoint into freshly built run objects; returns the completed iterations,
    the training seconds so far and the ``run`` facts it was saved with.

    A file of another format or algorithm, or with tensors that do not fit the learner, is a
    ``ValueError`` naming the mismatch; nothing is restored partially into the learner. Also
    restores the global torch, NumPy and Python RNG states saved with it. See
    :class:`TrainingState` for an example.
    """
    path = Path(path)
    learner, algorithm, optimizer = run_state.learner, run_state.algorithm, run_state.optimizer
    scheduler, sampler = run_state.scheduler, run_state.sampler
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a mamlkit checkpoint (format {metadata.get('format')!r})")
    if metadata.get("algorithm") != algorithm:
        raise ValueError(
            f"{path} is a checkpoint of algorithm {metadata.get('algorithm')!r}, but the run "
            f"is configured for {algorithm!r}"
        )
    state = {k[len("learner/") :]: v for k, v in tensors.items() if k.startswith("learner/")}
    own = learner.state_dict()
    wrong = [
        f"{name} {tuple(state[name].shape)} vs {tuple(value.shape)}"
        for name, value in own.items()
        if name in state and state[name].shape != value.shape
    ]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if wrong or missing or unexpected:
        raise ValueError(
            f"{path} does not fit this run's learner: "
            + "; ".join(
                part
                for part in (
                    f"shapes differ: {', '.join(wrong)}" if wrong else "",
                    f"missing: {', '.join(missing)}" if missing else "",
                    f"unexpected: {', '.join(unexpected)}" if unexpected else "",
                )
                if part
            )
        )
    try:
        scalars = json.loads(metadata["optimizer_scalars"])
        optim_state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/", 2)
                optim_state.setdefault(int(index), {})[name] = value
        for index, values in scalars.items():
            optim_state.setdefault(int(index), {}).update(values)
        optim = {
            "state": optim_state,
            "param_groups": json.loads(metadata["optimizer_param_groups"]),
        }
        scheduler_state = json.loads(metadata["scheduler"])
        sampler_state = json.loads(metadata["sampler"])
        numpy_state = json.loads(metadata["rng_numpy"])
        python_state = json.loads(metadata["rng_python"])
        iteration = int(metadata["iteration"])
        train_seconds = float(metadata["train_seconds"])
        run = json.loads(metadata.get("run", "{}"))
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is an incomplete or damaged checkpoint ({error})") from None
    learner.load_state_dict(state, strict=True)
    optimizer.load_state_dict(optim)  # moves the moments to their parameters' device itself
    if scheduler is not None and scheduler_state is not None:
        scheduler.load_state_dict(scheduler_state)
    sampler.load_state_dict(sampler_state)
    torch.set_rng_state(tensors["rng/torch"])
    _set_numpy_state(numpy_state)
    _set_python_state(python_state)
    return iteration, train_seconds, run
