"""Testing a learner on new tasks: :func:`evaluate` over a task stream, :func:`eval_run` on a run
folder, and the one result type both give, :class:`EvalResult`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mamlkit.algorithms import resolve_algorithm
from mamlkit.episodes import episode_tensors
from mamlkit.errors import ConfigError
from mamlkit.io import atomic_write_json
from mamlkit.learner import MetaLearner
from mamlkit.progress import progress_bar
from mamlkit.training.build import (
    build_dataset,
    build_sampler,
    registered_task,
    resolve_device,
)
from mamlkit.training.config import TEST_OVERRIDES, EvalConfig, TrainConfig
from mamlkit.training.fits import FITS_FILE, plots_unavailable, write_regression_fits
from mamlkit.training.run_folder import (
    EVAL_FILE,
    load_config,
    load_run,
    weights_facts,
    weights_file,
)
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


def evaluated_config(config: TrainConfig, evaluation: EvalConfig) -> TrainConfig:
    """The run's ``config`` as ``evaluation`` tests it: its ``shots`` and ``inner_lr`` in place
    of the run's where given (:data:`~mamlkit.training.config.TEST_OVERRIDES`).

    What a trained run cannot honour is a :class:`~mamlkit.errors.ConfigError` saying why:
    ``ways`` other than the run's (its classifier has one output per trained class, meta-learned
    as one N-way initialisation, so it is tested on N-way tasks) or any ``ways`` of a regression
    run (its tasks have no classes), and ``inner_lr`` for an algorithm that learns its inner
    rates (Meta-SGD, MAML++: the run is tested with the rates it learned). For the others
    ``inner_lr`` is the fixed inner rate (Reptile with ``update_rule=adam``: the inner Adam step).

    >>> from mamlkit.training import EvalConfig, TrainConfig
    >>> from mamlkit.training.evaluation import evaluated_config
    >>> evaluated_config(TrainConfig(shots=1), EvalConfig(shots=5, inner_lr=0.1)).shots
    5
    >>> evaluated_config(TrainConfig(ways=5), EvalConfig(ways=3))
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: --ways 3: this run's model has a 5-way classifier (one output per
    class of a task, meta-learned together), so it is tested on 5-way tasks; leave --ways unset,
    or train a 3-way run
    >>> evaluated_config(TrainConfig(algorithm="metasgd"), EvalConfig(inner_lr=0.1))
    Traceback (most recent call last):
        ...
    mamlkit.errors.ConfigError: --inner-lr 0.1: algorithm 'metasgd' learns its inner learning
    rates (update rule per_element), and the run is tested with the rates it learned
    (learned_inner_lrs in summary.json); leave --inner-lr unset
    """
    if evaluation.ways is not None:
        if registered_task(config.dataset) != TaskKind.CLASSIFICATION:
            raise ConfigError(
                f"--ways {evaluation.ways}: {config.dataset} is a regression dataset, whose tasks "
                "have no classes; leave --ways unset and give the support points per task with "
                "--shots"
            )
        if evaluation.ways != config.ways:
            raise ConfigError(
                f"--ways {evaluation.ways}: this run's model has a {config.ways}-way classifier "
                "(one output per class of a task, meta-learned together), so it is tested on "
                f"{config.ways}-way tasks; leave --ways unset, or train a {evaluation.ways}-way run"
            )
    spec = resolve_algorithm(config.algorithm)
    if evaluation.inner_lr is not None and spec.learns_inner_rates:
        raise ConfigError(
            f"--inner-lr {evaluation.inner_lr:g}: algorithm {config.algorithm!r} learns its inner "
            f"learning rates (update rule {spec.update_rule}), and the run is tested with the "
            "rates it learned (learned_inner_lrs in summary.json); leave --inner-lr unset"
        )
    replaced = {
        key: getattr(evaluation, key)
        for key in ("shots", "inner_lr")
        if getattr(evaluation, key) is not None
    }
    return dataclasses.replace(config, **replaced) if replaced else config


def setting_overrides(config: TrainConfig, tested: TrainConfig) -> dict[str, dict[str, Any]]:
    """The test settings that differ from the run's training values, each as ``{"trained": ...,
    "tested": ...}`` (what ``eval.json`` records as ``overrides``).

    >>> from mamlkit.training import EvalConfig, TrainConfig
    >>> from mamlkit.training.evaluation import setting_overrides, evaluated_config
    >>> run = TrainConfig(shots=1)
    >>> setting_overrides(run, evaluated_config(run, EvalConfig(shots=5, ways=5)))
    {'shots': {'trained': 1, 'tested': 5}}
    """
    return {
        key: {"trained": getattr(config, key), "tested": getattr(tested, key)}
        for key in TEST_OVERRIDES
        if getattr(config, key) != getattr(tested, key)
    }


def evaluated_setting(record: dict[str, Any]) -> str:
    """The task setting an ``eval.json`` record was tested on, in words, with the training value
    of each setting it overrode: ``5-way 5-shot (trained 1-shot)``.

    >>> from mamlkit.training.evaluation import evaluated_setting
    >>> shots = {"shots": {"trained": 1, "tested": 5}}
    >>> evaluated_setting({"ways": 5, "shots": 5, "overrides": shots})
    '5-way 5-shot (trained 1-shot)'
    >>> evaluated_setting({"task": "regression", "shots": 10, "inner_lr": 0.02,
    ...                 "overrides": {"inner_lr": {"trained": 0.01, "tested": 0.02}}})
    '10-shot regression, inner lr 0.02 (trained 0.01)'
    """
    overrides = record.get("overrides") or {}
    text = f"{record['shots']}-shot"
    if record.get("task") == TaskKind.REGRESSION.value:
        text += " regression"
    else:
        text = f"{record['ways']}-way {text}"
    if "shots" in overrides:
        text += f" (trained {overrides['shots']['trained']}-shot)"
    if "inner_lr" in overrides:
        lr = overrides["inner_lr"]
        text += f", inner lr {lr['tested']:g} (trained {lr['trained']:g})"
    return text


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
    ``evaluation.shots`` and ``evaluation.inner_lr`` test the run on other tasks than it trained
    on (:func:`evaluated_config` says what a run can honour); ``eval.json`` records the ``ways``,
    ``shots`` and fixed ``inner_lr`` tested and, under ``overrides``, each that differs from the
    run's training value.
    A regression run (e.g. ``sinusoid``) is scored by MSE and also writes ``fits.png``: the true
    function, the support points and the predictions before adaptation, after one step and after
    K steps for the first 4 test tasks (when its sampler has ``sample_with_tasks``, as the
    sinusoid's does; without matplotlib ``eval.json``'s ``fits`` says it was skipped and
    why). ``device`` and ``data_root`` replace the run's own (e.g. to evaluate on
    another machine); see :func:`~mamlkit.training.train_run` for an example.
    """
    evaluation = evaluation or EvalConfig()
    run_dir = Path(run_dir)
    tested = weights_file(run_dir, evaluation.weights)
    trained = load_config(run_dir)
    config, learner = load_run(
        run_dir, weights=evaluation.weights, config=evaluated_config(trained, evaluation)
    )
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
        # the fixed inner rate used; null when the algorithm's learned rates were used
        "inner_lr": None if learner.algorithm.learns_inner_rates else config.inner_lr,
        "overrides": setting_overrides(trained, config),
        "test_tasks_sha256": tasks_digest.hexdigest(),
        "weights_file": tested.name,
        "weights_facts": weights_facts(tested),  # iteration and validation score of the best
        "environment": environment(),
    }
    if result.task == TaskKind.CLASSIFICATION:
        record["ways"] = config.ways
    else:  # a regression task has no classes
        del record["ways"]
    if result.task == TaskKind.REGRESSION and hasattr(sampler, "sample_with_tasks"):
        skipped = plots_unavailable()
        if skipped is not None:  # and no stale figure of an earlier evaluation either
            (run_dir / FITS_FILE).unlink(missing_ok=True)
            record["fits"] = {"file": None, "skipped": skipped}
        else:
            record["fits"] = write_fits(run_dir / FITS_FILE, learner, config, evaluation, dataset)
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
