"""The outer loop: meta-train a :class:`MetaLearner` on a stream of episodes, and evaluate it.

Kept outside :mod:`mamlkit.core` on purpose: the core is pure functions and one module; this file
adds optimisers, progress bars, logging and statistics.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamlkit.core.learner import MAML, MetaLearner
from mamlkit.progress import progress_bar

LogFn = Callable[[dict[str, Any]], None]


def _episode_tensors(episode: Any, device: torch.device | None) -> tuple[Tensor, ...]:
    try:
        tensors = tuple(episode)
    except TypeError:
        tensors = ()
    if len(tensors) != 4 or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(
            "each batch of the task loader must be (support_x, support_y, query_x, query_y) "
            f"tensors, got {type(episode).__name__}"
        )
    if device is not None:
        tensors = tuple(t.to(device, non_blocking=True) for t in tensors)
    return tensors


def _limited(episodes: Iterable[Any], iterations: int | None) -> Iterator[Any]:
    if iterations is None:
        yield from episodes
        return
    for index, episode in enumerate(episodes):
        if index >= iterations:
            return
        yield episode


def _total(episodes: Iterable[Any], iterations: int | None) -> int | None:
    if iterations is not None:
        return iterations
    try:
        return len(episodes)  # type: ignore[arg-type]
    except TypeError:
        return None


def fit(
    learner: MetaLearner,
    episodes: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    *,
    iterations: int | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    log_every: int = 1,
    on_log: LogFn | None = None,
    description: str | None = None,
    start: int = 0,
    train_seconds: float = 0.0,
    on_iteration: Callable[[int, float], None] | None = None,
    after_backward: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> list[float]:
    """Meta-train for ``iterations`` meta-batches of ``episodes`` (all of them if ``None``).

    Each iteration: draw a meta-batch, zero grads, ``learner.meta_backward`` (the meta-loss
    backpropagated ``learner.tasks_per_backward`` tasks at a time), ``optimizer.step()`` (and
    ``scheduler.step()``). A non-finite loss or meta-gradient stops training before the step
    with a ``FloatingPointError`` naming the iteration (and the first inner step whose query loss
    is not finite, where one is). ``learner.iteration`` is set to each iteration's 0-based index
    first, so the MAML++ schedules follow it. ``on_log`` receives a record every ``log_every``
    iterations and at the last one; ``train_seconds`` in it counts only the iterations themselves
    (episode sampling included, time spent inside ``on_log`` excluded), so callers may evaluate
    there without distorting timings. Returns the per-iteration losses.

    Resuming: ``start`` iterations are already done (``episodes`` continues their stream, the
    learner and optimiser hold their state); iterations ``start+1 .. iterations`` run, and
    ``train_seconds`` is the training time spent so far. ``on_iteration(done, train_seconds)``
    is called after every completed iteration (checkpoints, stop requests).

    ``after_backward(metrics)`` runs between the backward pass and the checks before the step, and
    returns the metrics to use (scale-out: average the gradients and metrics over processes, see
    :mod:`mamlkit.distributed`).

    ``episodes`` yields ``(support_x, support_y, query_x, query_y)`` meta-batches, e.g. an
    :class:`~mamlkit.data.EpisodeSampler` (moved to ``device`` if given). An endless stream needs
    ``iterations``. Meta-training sinusoid regression for a few iterations:

    >>> import torch
    >>> from mamlkit import MetaLearner, fit
    >>> from mamlkit.data import SinusoidSampler
    >>> from mamlkit.models import MLP
    >>> learner = MetaLearner(MLP(), "maml", inner_lr=0.01, task="regression")
    >>> optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
    >>> records = []
    >>> losses = fit(
    ...     learner, SinusoidSampler(shots=10, queries=10, meta_batch=4, seed=0), optimizer,
    ...     iterations=5, progress=False, log_every=5, on_log=records.append,
    ... )
    >>> len(losses), sorted(records[0])
    (5, ['iteration', 'iteration_seconds', 'loss', 'train_seconds'])
    """
    if iterations is not None and (isinstance(iterations, bool) or iterations < 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    device = torch.device(device) if device is not None else None
    total = _total(episodes, iterations)
    if total is None:
        raise ValueError("the task loader is endless: pass iterations=N")
    if not 0 <= start <= total:
        raise ValueError(f"start must be in 0..{total}, got {start}")
    losses: list[float] = []
    stream = _limited(episodes, total - start)
    learner.train()
    with progress_bar(
        total=total,
        initial=start,
        enabled=progress,
        desc=description or learner.algorithm.name,
        unit="it",
        dynamic_ncols=True,
    ) as bar:
        for index in range(start, total):
            tick = time.perf_counter()
            episode = next(stream, None)
            if episode is None:
                break
            support_x, support_y, query_x, query_y = _episode_tensors(episode, device)
            learner.iteration = index
            optimizer.zero_grad(set_to_none=True)
            metrics = learner.meta_backward(support_x, support_y, query_x, query_y)
            if after_backward is not None:
                metrics = after_backward(metrics)
            # checked before the step, so no update from a bad iteration is ever applied
            problem = _non_finite(learner, metrics["loss"])
            if problem is not None:
                step = _first_bad_inner_step(learner, (support_x, support_y, query_x, query_y))
                where = (
                    f" (the query loss is first non-finite after inner step {step})" if step else ""
                )
                raise FloatingPointError(
                    f"{problem} at iteration {index + 1}{where}; the usual cause is an inner "
                    "learning rate that is too high (lower --inner-lr) or an outer one "
                    "(--outer-lr)"
                )
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            seconds = time.perf_counter() - tick
            train_seconds += seconds
            losses.append(metrics["loss"])
            bar.update(1)
            postfix = {"loss": f"{metrics['loss']:.3f}"}
            if "accuracy" in metrics:  # classification only
                postfix["acc"] = f"{metrics['accuracy']:.3f}"
            bar.set_postfix(postfix)
            if on_log is not None and ((index + 1) % log_every == 0 or index + 1 == total):
                on_log(
                    {
                        "iteration": index + 1,
                        **metrics,
                        "iteration_seconds": seconds,
                        "train_seconds": train_seconds,
                    }
                )
            if on_iteration is not None:
                on_iteration(index + 1, train_seconds)
    return losses


def _non_finite(learner: MetaLearner, loss: float) -> str | None:
    """What is not finite after a meta-backward: the loss, or a named meta-gradient."""
    if not math.isfinite(loss):
        return f"the meta-loss became {loss}"
    grads = [(n, p.grad) for n, p in learner.named_parameters() if p.grad is not None]
    if grads and not bool(torch.stack([torch.isfinite(g).all() for _, g in grads]).all()):
        bad = next(n for n, g in grads if not torch.isfinite(g).all())
        return f"the meta-gradient of {bad} became non-finite"
    return None


def _first_bad_inner_step(learner: MetaLearner, batch: tuple[Tensor, ...]) -> int | None:
    """The first inner step after which some task's query loss is not finite (diagnosis only)."""
    try:
        losses = learner.score_tasks(*batch).loss  # [tasks, steps + 1]
    except (RuntimeError, ValueError):
        return None
    finite = torch.isfinite(losses).all(dim=0).tolist()
    return next((k for k, ok in enumerate(finite) if not ok), None)


def train_maml(
    model: nn.Module,
    task_dataloader: Iterable[Any],
    inner_lr: float = 0.01,
    outer_lr: float = 0.001,
    inner_steps: int = 5,
    first_order: bool = False,
    plus_plus: bool = False,
    *,
    iterations: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    **settings: Any,
) -> tuple[nn.Module, MAML, list[float]]:
    """Meta-train ``model`` with MAML, FOMAML (``first_order``) or MAML++ (``plus_plus``).

    ``task_dataloader`` yields ``(support_x, support_y, query_x, query_y)`` task batches (e.g. an
    :class:`mamlkit.data.EpisodeSampler`); it is consumed once, or for ``iterations`` batches.
    The outer optimiser is Adam with ``outer_lr``. Returns the trained model, the learner (which
    holds any learned inner learning rates) and the per-iteration meta-losses. ``settings`` go to
    :class:`~mamlkit.MAML` (e.g. ``task="regression"``, ``execution="loop"``).

    The one-call entry point; :func:`fit` is the same loop with your own optimiser, schedule
    and logging. 5-way 1-shot Omniglot (needs the data, so not run here):

    >>> from mamlkit import Conv4, train_maml
    >>> from mamlkit.data import EpisodeSampler, Omniglot
    >>> tasks = EpisodeSampler(Omniglot(download=True), 5, 1, 15, 32)  # doctest: +SKIP
    >>> model, learner, losses = train_maml(Conv4(), tasks, 0.4, iterations=100)  # doctest: +SKIP

    Sinusoid regression, which needs no data:

    >>> from mamlkit.data import SinusoidSampler
    >>> from mamlkit.models import MLP
    >>> model, learner, losses = train_maml(
    ...     MLP(), SinusoidSampler(10, 10, 4), inner_lr=0.01, inner_steps=1, iterations=3,
    ...     progress=False, task="regression",
    ... )
    >>> learner.algorithm.name, len(losses)
    ('maml', 3)
    """
    learner = MAML(
        model,
        inner_lr=inner_lr,
        inner_steps=inner_steps,
        first_order=first_order,
        plus_plus=plus_plus,
        **settings,
    )
    if device is not None:
        learner.to(device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=outer_lr)
    losses = fit(
        learner, task_dataloader, optimizer, iterations=iterations, device=device, progress=progress
    )
    return learner.model, learner, losses


@dataclass
class EvalResult:
    """Test accuracy over tasks: mean, 95% confidence half-width (1.96 std / sqrt(tasks)), spread.

    ``std`` is the population standard deviation of the per-task accuracies (``ddof=0``, as in the
    MAML papers' code). ``per_step_*`` hold means over tasks after 0, 1, ..., K inner steps;
    ``task_accuracies`` the final accuracy of each task. What :func:`evaluate` returns for a
    classification learner.

    >>> from mamlkit import EvalResult
    >>> result = EvalResult(
    ...     accuracy=0.9, ci95=0.01, std=0.12, tasks=600, inner_steps=3,
    ...     per_step_accuracy=[0.2, 0.8, 0.9, 0.9], per_step_loss=[1.6, 0.5, 0.3, 0.3],
    ...     task_accuracies=[],
    ... )
    >>> result.summary()
    'accuracy 90.00% +- 1.00% (600 tasks)'
    """

    accuracy: float
    ci95: float
    std: float
    tasks: int
    inner_steps: int
    per_step_accuracy: list[float]
    per_step_loss: list[float]
    task_accuracies: list[float] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-able data (what ``eval.json`` records)."""
        return asdict(self)

    def summary(self) -> str:
        """One line: mean accuracy +- 95% confidence half-width (percent) and the task count."""
        return f"accuracy {100 * self.accuracy:.2f}% +- {100 * self.ci95:.2f}% ({self.tasks} tasks)"


@dataclass
class RegressionEvalResult:
    """Test query MSE over regression tasks: mean, 95% confidence half-width, spread.

    The regression counterpart of :class:`EvalResult` (what :func:`evaluate` returns for a
    learner with ``task="regression"``): ``mse`` is the mean over tasks of each task's query MSE
    after ``inner_steps`` steps, ``ci95`` is 1.96 std / sqrt(tasks), ``std`` the population
    standard deviation (``ddof=0``) of the per-task MSEs (``task_mse``). ``per_step_loss`` holds
    the mean query MSE after 0 (before adaptation), 1, ..., K inner steps.
    """

    mse: float
    ci95: float
    std: float
    tasks: int
    inner_steps: int
    per_step_loss: list[float]
    task_mse: list[float] = field(repr=False)
    task: str = "regression"

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-able data (what ``eval.json`` records)."""
        return asdict(self)

    def summary(self) -> str:
        """One line: mean MSE +- 95% confidence half-width and the task count."""
        return f"MSE {self.mse:.3f} +- {self.ci95:.3f} ({self.tasks} tasks)"


def evaluate(
    learner: MetaLearner,
    episodes: Iterable[Any],
    *,
    tasks: int,
    inner_steps: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> EvalResult | RegressionEvalResult:
    """Adapt to ``tasks`` test tasks from ``episodes`` and score their query sets at every step.

    Classification learners give an :class:`EvalResult` (accuracy); regression learners
    (``task="regression"``, which must use the default ``mse_loss``) a
    :class:`RegressionEvalResult` (MSE).

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
    >>> type(result).__name__, result.tasks, len(result.per_step_loss)  # before, 1 and 2 steps
    ('RegressionEvalResult', 8, 3)
    """
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"tasks must be a positive integer, got {tasks!r}")
    regression = learner.task == "regression"
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
            scores = learner.score_tasks(*_episode_tensors(episode, device), steps=inner_steps)
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
    if regression:
        final = loss[:, -1]
        mean, ci95, std = _spread(final)
        return RegressionEvalResult(
            mse=mean,
            ci95=ci95,
            std=std,
            tasks=tasks,
            inner_steps=loss.shape[1] - 1,
            per_step_loss=loss.mean(0).tolist(),
            task_mse=final.tolist(),
        )
    accuracy = torch.cat(accuracies).double()
    final = accuracy[:, -1]
    mean, ci95, std = _spread(final)
    return EvalResult(
        accuracy=mean,
        ci95=ci95,
        std=std,
        tasks=tasks,
        inner_steps=accuracy.shape[1] - 1,
        per_step_accuracy=accuracy.mean(0).tolist(),
        per_step_loss=loss.mean(0).tolist(),
        task_accuracies=final.tolist(),
    )


def _spread(per_task: Tensor) -> tuple[float, float, float]:
    """Mean, 95% confidence half-width (1.96 std / sqrt(n)) and population std over tasks."""
    std = float(per_task.std(correction=0))
    return float(per_task.mean()), 1.96 * std / math.sqrt(per_task.numel()), std


def median_or_nan(values: list[float]) -> float:
    """The median of ``values``, or NaN for none (e.g. per-iteration times of an empty run).

    >>> from mamlkit.training import median_or_nan
    >>> median_or_nan([3.0, 1.0, 2.0]), median_or_nan([])
    (2.0, nan)
    """
    return statistics.median(values) if values else float("nan")
