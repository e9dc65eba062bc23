"""Testing a learner on new tasks: :func:`evaluate` over a task stream, :func:`eval_run` on a run
folder, and the one result type both give, :class:`EvalResult`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mamlkit.episodes import episode_tensors
from mamlkit.io import atomic_write_json
from mamlkit.learner import MetaLearner
from mamlkit.progress import progress_bar
from mamlkit.training.build import build_dataset, build_sampler, resolve_device
from mamlkit.training.config import EvalConfig, TrainConfig
from mamlkit.training.fits import FITS_FILE, write_regression_fits
from mamlkit.training.run_folder import EVAL_FILE, load_run, weights_facts, weights_file
from mamlkit.training.telemetry import TensorDigest, digesting, environment
from mamlkit.vocabulary import TaskKind


@dataclass
class EvalResult:
    """A learner's score over test tasks: mean, 95% confidence half-width (1.96 std /
    sqrt(tasks)) and spread of the per-task score after ``inner_steps`` steps.

    The score is the query accuracy for classification (``accuracy``, ``task_accuracies``,
    ``per_step_accuracy``) and the query MSE for regression (``mse``, ``task_mse``); the other
    task kind's fields are ``None``. ``std`` is the population standard deviation of the per-task
    scores (``ddof=0``, as in the MAML papers' code); ``per_step_loss`` (and
    ``per_step_accuracy``) hold means over tasks after 0, 1, ..., K inner steps. What
    :func:`evaluate` returns.

    >>> from mamlkit import EvalResult
    >>> result = EvalResult(
    ...     accuracy=0.9, ci95=0.01, std=0.12, tasks=600, inner_steps=3,
    ...     per_step_accuracy=[0.2, 0.8, 0.9, 0.9], per_step_loss=[1.6, 0.5, 0.3, 0.3],
    ...     task_accuracies=[],
    ... )
    >>> result.summary(), str(result.task)
    ('accuracy 90.00% +- 1.00% (600 tasks)', 'classification')
    >>> EvalResult(mse=0.2, ci95=0.01, std=0.1, tasks=8, inner_steps=1, per_step_loss=[1, 0.2],
    ...            task_mse=[]).summary()
    'MSE 0.200 +- 0.010 (8 tasks)'
    """

    ci95: float
    std: float
    tasks: int
    inner_steps: int
    per_step_loss: list[float]
    accuracy: float | None = None
    per_step_accuracy: list[float] | None = None
    task_accuracies: list[float] | None = field(default=None, repr=False)
    mse: float | None = None
    task_mse: list[float] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.accuracy is None) == (self.mse is None):
            raise ValueError("an EvalResult holds either an accuracy or an MSE")

    @property
    def task(self) -> TaskKind:
        """Classification (an accuracy) or regression (an MSE)."""
        return TaskKind.CLASSIFICATION if self.accuracy is not None else TaskKind.REGRESSION

    def to_dict(self) -> dict[str, Any]:
        """The fields of its task kind as JSON-able data (what ``eval.json`` records)."""
        if self.task == TaskKind.CLASSIFICATION:
            keys = ["accuracy", "ci95", "std", "tasks", "inner_steps", "per_step_accuracy"]
            return {
                **{k: getattr(self, k) for k in keys},
                "per_step_loss": self.per_step_loss,
                "task_accuracies": self.task_accuracies,
            }
        keys = ["mse", "ci95", "std", "tasks", "inner_steps", "per_step_loss", "task_mse"]
        return {**{k: getattr(self, k) for k in keys}, "task": self.task.value}

    def summary(self) -> str:
        """One line: the mean score +- its 95% confidence half-width, and the task count."""
        if self.accuracy is not None:
            return (
                f"accuracy {100 * self.accuracy:.2f}% +- {100 * self.ci95:.2f}% "
                f"({self.tasks} tasks)"
            )
        return f"MSE {self.mse:.3f} +- {self.ci95:.3f} ({self.tasks} tasks)"


def evaluate(
    learner: MetaLearner,
    episodes: Iterable[Any],
    *,
    tasks: int,
    inner_steps: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> EvalResult:
    """Adapt to ``tasks`` test tasks from ``episodes`` and score their query sets at every step.

    Classification learners are scored by accuracy; regression learners (``task="regression"``,
    which must use the default ``mse_loss``) by MSE.

    ``inner_steps`` defaults to the learner's; ``episodes`` is read until ``tasks`` tasks are
    scored (tasks beyond them in the last meta-batch are dropped; running out first is a
    ``ValueError``). The learner is put in eval mode while scoring and back in train mode after.
    No meta-graph is built. Usually ``episodes`` is a sampler of the test split with its own
    seed, so every algorithm is tested on the same tasks.

    >>> from mamlkit import MetaLearner, evaluate
    >>> from mamlkit.data import SinusoidSampler
    >>> from mamlkit.models import MLP
    >>> learner = MetaLearner(MLP(), "maml", inner_lr=0.01, inner_steps=2, task="regression")
    >>> test = SinusoidSampler(shots=10, queries=10, meta_batch=4, seed=0, split="test")
    >>> result = evaluate(learner, test, tasks=8, progress=False)
    >>> str(result.task), result.tasks, len(result.per_step_loss)  # before, 1 and 2 steps
    ('regression', 8, 3)
    """
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"tasks must be a positive integer, got {tasks!r}")
    regression = learner.task == TaskKind.REGRESSION
    if regression and learner.loss_fn is not F.mse_loss:
        raise ValueError(
            "evaluate reports the MSE of regression tasks, but this learner's loss_fn is "
            f"{getattr(learner.loss_fn, '__name__', learner.loss_fn)!r}; use "
            "learner.score_tasks for the losses of a custom loss_fn"
        )
    device = torch.device(device) if device is not None else None
    losses: list[Tensor] = []
    accuracies: list[Tensor] = []
    seen = 0
    learner.eval()
    with progress_bar(total=tasks, enabled=progress, desc="eval", unit="task") as bar:
        for episode in episodes:
            scores = learner.score_tasks(*episode_tensors(episode, device), steps=inner_steps)
            take = min(tasks - seen, scores.loss.shape[0])
            losses.append(scores.loss[:take].cpu())
            if scores.accuracy is not None:
                accuracies.append(scores.accuracy[:take].cpu())
            seen += take
            bar.update(take)
            if seen >= tasks:
                break
    learner.train()
    if seen < tasks:
        raise ValueError(f"the task loader ran out after {seen} of {tasks} tasks")
    loss = torch.cat(losses).double()
    common = {
        "tasks": tasks,
        "inner_steps": loss.shape[1] - 1,
        "per_step_loss": loss.mean(0).tolist(),
    }
    if regression:
        final = loss[:, -1]
        mean, ci95, std = _spread(final)
        return EvalResult(mse=mean, ci95=ci95, std=std, task_mse=final.tolist(), **common)
    accuracy = torch.cat(accuracies).double()
    final = accuracy[:, -1]
    mean, ci95, std = _spread(final)
    return EvalResult(
        accuracy=mean,
        ci95=ci95,
        std=std,
        per_step_accuracy=accuracy.mean(0).tolist(),
        task_accuracies=final.tolist(),
        **common,
    )


def _spread(per_task: Tensor) -> tuple[float, float, float]:
    """Mean, 95% confidence half-width (1.96 std / sqrt(n)) and population std over tasks."""
    std = float(per_task.std(correction=0))
    return float(per_task.mean()), 1.96 * std / math.sqrt(per_task.numel()), std


def evaluation_sampler(config: TrainConfig, dataset: Any, evaluation: EvalConfig) -> Any:
    """The test-task stream ``evaluation`` describes (its queries, meta-batch and seed)."""
    return build_sampler(
        config,
        dataset,
        queries=evaluation.queries,
        meta_batch=evaluation.meta_batch,
        seed=evaluation.seed,
    )


def eval_run(
    run_dir: str | Path,
    evaluation: EvalConfig | None = None,
    *,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = True,
) -> EvalResult:
    """Evaluate a trained run as ``evaluation`` says; writes ``eval.json`` into the run folder.

    ``evaluation.weights`` chooses the weights: by default the validation's best when the run
    kept them (``--validation``), else the final ones; ``eval.json`` names the file tested.
    A regression run (e.g. ``sinusoid``) is scored by MSE and also writes ``fits.png``: the true
    function, the support points and the predictions before adaptation, after one step and after
    K steps for the first 4 test tasks (when its sampler has ``sample_with_tasks``, as the
    sinusoid's does). ``device`` and ``data_root`` replace the run's own (e.g. to evaluate on
    another machine); see :func:`~mamlkit.training.train_run` for an example.
    """
    evaluation = evaluation or EvalConfig()
    run_dir = Path(run_dir)
    tested = weights_file(run_dir, evaluation.weights)
    config, learner = load_run(run_dir, weights=evaluation.weights)
    if data_root is not None:
        config.data_root = data_root
    target = resolve_device(device or config.device)
    learner.to(target)
    dataset = build_dataset(config, evaluation.split)
    sampler = evaluation_sampler(config, dataset, evaluation)
    tasks_digest = TensorDigest()
    result = evaluate(
        learner,
        digesting(sampler, tasks_digest),
        tasks=evaluation.tasks,
        inner_steps=evaluation.inner_steps,
        device=target,
        progress=progress,
    )
    record = {
        **evaluation.to_dict(),
        **result.to_dict(),  # its inner_steps: the steps used, also when the config's is None
        "shots": config.shots,
        "test_tasks_sha256": tasks_digest.hexdigest(),
        "weights_file": tested.name,
        "weights_facts": weights_facts(tested),  # iteration and validation score of the best
        "environment": environment(),
    }
    if result.task == TaskKind.REGRESSION:
        if hasattr(sampler, "sample_with_tasks"):
            record["fits"] = write_fits(run_dir / FITS_FILE, learner, config, evaluation, dataset)
    else:
        record["ways"] = config.ways
    atomic_write_json(run_dir / EVAL_FILE, record)
    return result


def write_fits(
    path: Path,
    learner: MetaLearner,
    config: TrainConfig,
    evaluation: EvalConfig,
    dataset: Any,
    *,
    tasks: int = 4,
) -> dict[str, Any]:
    """``fits.png`` of a regression run: its fits to the first ``tasks`` evaluated test tasks
    (the first meta-batch of the evaluation stream, redrawn), after 1 and K inner steps. Returns
    what ``eval.json`` records of it (file name, steps, MSE against the true functions)."""
    sampler = evaluation_sampler(config, dataset, evaluation)
    episode, truth = sampler.sample_with_tasks()
    steps = evaluation.inner_steps or config.inner_steps
    errors = write_regression_fits(
        path,
        learner,
        episode,
        truth,
        steps=steps,
        x_range=getattr(sampler, "x_range", None),
        tasks=tasks,
    )
    return {"file": path.name, "tasks": len(errors["before"]), "steps": steps, **errors}
