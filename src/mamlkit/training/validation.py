"""Model selection during training: validation evaluations, the best weights, early stopping,
and a wall-clock budget.

:class:`Validation` scores the learner on the same validation tasks every ``every`` iterations
(the tasks are redrawn from a fixed seed each time, so the scores are comparable), logs the
score, keeps the weights that scored best (``model.best.safetensors``) and, with ``patience``,
ends training when the score has not improved for that many evaluations, as papers select their
models. :class:`TimeBudget` ends training once its training time reaches a budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from mamlkit.learner import MetaLearner
from mamlkit.training.evaluation import EvalResult, evaluate
from mamlkit.training.loop import Callback, LoopState, Record

#: The keys of a validation record in ``metrics.jsonl`` (beside ``iteration``/``train_seconds``).
VALIDATION_KEYS = ("val_accuracy", "val_mse", "val_ci95", "val_loss", "val_tasks")


def validation_score(record: Record) -> float:
    """A validation record's score, higher is better: the accuracy, or minus the MSE."""
    if record.get("val_accuracy") is not None:
        return float(record["val_accuracy"])
    return -float(record["val_mse"])


def is_validation_record(record: Record) -> bool:
    """Whether a ``metrics.jsonl`` record is a validation evaluation (not a training iteration)."""
    return "val_ci95" in record


class Validation(Callback):
    """Every ``every`` iterations (and at the last), evaluate ``tasks`` validation tasks.

    Args:
        episodes: makes a fresh stream of the validation tasks (the same tasks every call).
        tasks: validation tasks per evaluation.
        every: iterations between evaluations.
        iterations: the run's total (an evaluation is always made at the end).
        inner_steps: inner steps at validation (``None``: the learner's).
        write: called with each validation record (e.g. to append it to ``metrics.jsonl``).
        save_best: called with the learner when it scores best so far.
        patience: end training after this many evaluations without improvement (``None``: never).
        history: validation records of the iterations already done (when resuming), from which
            the best score and the evaluations since it are restored.

    ``records`` holds every validation record; ``best`` the best one so far.
    """

    def __init__(
        self,
        episodes: Callable[[], Any],
        *,
        tasks: int,
        every: int,
        iterations: int,
        inner_steps: int | None = None,
        write: Callable[[Record], None] | None = None,
        save_best: Callable[[MetaLearner, Record], None] | None = None,
        patience: int | None = None,
        history: list[Record] | None = None,
    ) -> None:
        self.episodes, self.tasks, self.every, self.iterations = episodes, tasks, every, iterations
        self.inner_steps, self.write, self.save_best = inner_steps, write, save_best
        self.patience = patience
        self.records: list[Record] = []
        self.best: Record | None = None
        self.since_best = 0
        self.learner: MetaLearner | None = None
        for record in history or []:
            self._remember(record)

    def _remember(self, record: Record) -> bool:
        """Keep ``record``; whether it is the best so far."""
        self.records.append(record)
        if self.best is None or validation_score(record) > validation_score(self.best):
            self.best, self.since_best = record, 0
            return True
        self.since_best += 1
        return False

    def on_train_start(self, learner: MetaLearner) -> None:
        """Remember the learner to evaluate."""
        self.learner = learner

    def on_iteration_end(self, state: LoopState) -> None:
        """Evaluate when due; keep the best weights; stop when patience has run out."""
        done = state.iteration
        if self.learner is None or not (done % self.every == 0 or done == self.iterations):
            return
        result = evaluate(
            self.learner,
            self.episodes(),
            tasks=self.tasks,
            inner_steps=self.inner_steps,
            device=learner_device(self.learner),
            progress=False,
        )
        record = validation_record(result, done, state.train_seconds)
        if self.write is not None:
            self.write(record)
        if self._remember(record) and self.save_best is not None:
            self.save_best(self.learner, record)
        if self.patience is not None and self.since_best >= self.patience:
            state.stop_reason = "patience"


def validation_record(result: EvalResult, iteration: int, train_seconds: float) -> Record:
    """What ``metrics.jsonl`` records of a validation evaluation."""
    score_key = "val_accuracy" if result.accuracy is not None else "val_mse"
    score = result.accuracy if result.accuracy is not None else result.mse
    return {
        "iteration": iteration,
        "train_seconds": train_seconds,
        score_key: score,
        "val_ci95": result.ci95,
        "val_loss": result.per_step_loss[-1],
        "val_tasks": result.tasks,
    }


def learner_device(learner: MetaLearner) -> torch.device:
    """Where the learner's weights are (the episodes to score go there)."""
    return next(learner.parameters()).device


class TimeBudget(Callback):
    """Ends training once its training time reaches ``seconds`` (time in callbacks, such as
    validation, is not counted, so every algorithm gets the same time to learn)."""

    def __init__(self, seconds: float) -> None:
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"a time budget must be a positive number of seconds, got {seconds}")
        self.seconds = seconds

    def on_iteration_end(self, state: LoopState) -> None:
        """Stop when the budget is spent."""
        if state.train_seconds >= self.seconds:
            state.stop_reason = state.stop_reason or "budget"
