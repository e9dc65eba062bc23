"""The outer loop: meta-train a :class:`~mamlkit.MetaLearner` on a stream of episodes.

:func:`fit` runs the iterations; everything around them (logging to a file, checkpoints, a
Ctrl-C, averaging gradients over processes, evaluating on the way) is a :class:`Callback`.
:func:`train_maml` is the one-call form with Adam.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mamlkit.episodes import episode_tensors
from mamlkit.learner import DEFAULT_INNER_LR, DEFAULT_INNER_STEPS, MAML, MetaLearner
from mamlkit.progress import progress_bar
from mamlkit.training.distributed import is_main_process
from mamlkit.training.schedules import (
    DEFAULT_OUTER_LR_MIN,
    chosen_schedule,
    outer_lr_scheduler,
)

Record = dict[str, Any]


class Callback:
    """Hooks into :func:`fit`; every default does nothing, so a callback overrides what it needs.

    :meth:`on_train_start` is called once, before the first iteration. Then, in every
    iteration: :meth:`after_backward` (between the backward pass and the step), then, once the
    step is taken and the iteration's time is counted, :meth:`on_log` (every ``log_every``
    iterations and at the last) and :meth:`on_iteration_end`. Time spent in callbacks is not
    counted as training time.

    >>> from mamlkit.training import Callback
    >>> class CountLogs(Callback):
    ...     def __init__(self):
    ...         self.logged = 0
    ...     def on_log(self, record):
    ...         self.logged += 1
    """

    def on_train_start(self, learner: MetaLearner) -> None:
        """Training is about to start (or continue) with ``learner``."""

    def after_backward(self, metrics: dict[str, float]) -> dict[str, float]:
        """Gradients are in ``.grad``; return the metrics to use (e.g. averaged over
        processes)."""
        return metrics

    def on_log(self, record: Record) -> None:
        """A logged iteration: ``iteration``, the metrics, ``iteration_seconds`` and
        ``train_seconds`` (training time so far)."""

    def on_iteration_end(self, state: LoopState) -> None:
        """An iteration is complete (``state.iteration`` of them in all)."""


class _LogFunction(Callback):
    """A plain function given as a callback: called with each logged record."""

    def __init__(self, function: Callable[[Record], None]) -> None:
        self.function = function

    def on_log(self, record: Record) -> None:
        self.function(record)


@dataclass
class LoopState:
    """Where a run stands: ``iteration`` outer iterations done in ``train_seconds`` of training.

    Give it to :func:`fit` to continue a run (resuming from a checkpoint); callbacks receive it
    after every iteration.
    """

    iteration: int = 0
    train_seconds: float = 0.0
    #: Set by a callback to end training after this iteration (e.g. "patience", "budget").
    stop_reason: str | None = None


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
    callbacks: Sequence[Callback | Callable[[Record], None]] = (),
    log_every: int = 1,
    progress: bool = True,
    description: str | None = None,
    state: LoopState | None = None,
) -> list[float]:
    """Meta-train for ``iterations`` meta-batches of ``episodes`` (all of them if ``None``).

    Each iteration: draw a meta-batch, zero grads, ``learner.meta_backward`` (the meta-loss
    backpropagated ``learner.tasks_per_backward`` tasks at a time), ``optimizer.step()`` (and
    ``scheduler.step()``). A non-finite loss or meta-gradient stops training before the step
    with a ``FloatingPointError`` naming the iteration (and the first inner step whose query loss
    is not finite, where one is). ``learner.iteration`` is set to each iteration's 0-based index
    first, so the algorithm's schedules follow it. Returns the per-iteration losses. What the
    algorithm says a run should know before it starts (e.g. that MAML++'s derivative-order
    annealing keeps its first iterations first order) is issued once as a ``UserWarning`` (by
    rank 0 alone under torchrun).

    ``callbacks`` are :class:`Callback` objects or plain functions, which are called with each
    logged record (every ``log_every`` iterations and at the last one); a record's
    ``train_seconds`` counts only the iterations themselves (episode sampling included, time
    spent in callbacks excluded), so callbacks may evaluate without distorting timings.

    Resuming: ``state`` says how many iterations are already done and their training time
    (``episodes`` continues their stream, the learner and optimiser hold their state);
    iterations ``state.iteration + 1 .. iterations`` run. ``state`` is updated in place, so after
    the call it says where training ended; a callback that sets ``state.stop_reason`` ends it
    after the current iteration (early stopping, a time budget).

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
    ...     iterations=5, progress=False, log_every=5, callbacks=[records.append],
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
    state = LoopState() if state is None else state
    state.stop_reason = None
    if not 0 <= state.iteration <= total:
        raise ValueError(
            f"the iterations already done must be in 0..{total}, got {state.iteration}"
        )
    if is_main_process():  # once, not once per torchrun process
        for message in learner.hooks.notices(state.iteration, total):
            warnings.warn(message, stacklevel=2)  # e.g. MAML++'s first-order iterations
    hooks = [c if isinstance(c, Callback) else _LogFunction(c) for c in callbacks]
    losses: list[float] = []
    stream = _limited(episodes, total - state.iteration)
    learner.train()
    for hook in hooks:
        hook.on_train_start(learner)
    with progress_bar(
        total=total,
        initial=state.iteration,
        enabled=progress,
        desc=description or learner.algorithm.name,
        unit="it",
        dynamic_ncols=True,
    ) as bar:
        for index in range(state.iteration, total):
            tick = time.perf_counter()
            episode = next(stream, None)
            if episode is None:
                break
            batch = episode_tensors(episode, device)
            learner.iteration = index
            optimizer.zero_grad(set_to_none=True)
            metrics = learner.meta_backward(*batch)
            for hook in hooks:
                metrics = hook.after_backward(metrics)
            # checked before the step, so no update from a bad iteration is ever applied
            _stop_if_not_finite(learner, metrics["loss"], batch, index)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            seconds = time.perf_counter() - tick
            state.iteration, state.train_seconds = index + 1, state.train_seconds + seconds
            losses.append(metrics["loss"])
            bar.update(1)
            postfix = {"loss": f"{metrics['loss']:.3f}"}
            if "accuracy" in metrics:  # classification only
                postfix["acc"] = f"{metrics['accuracy']:.3f}"
            bar.set_postfix(postfix)
            record = {
                "iteration": index + 1,
                **metrics,
                "iteration_seconds": seconds,
                "train_seconds": state.train_seconds,
            }
            logged = (index + 1) % log_every == 0 or index + 1 == total
            if logged:
                for hook in hooks:
                    hook.on_log(record)
            for hook in hooks:
                hook.on_iteration_end(state)
            if state.stop_reason is not None:
                if not logged:  # the last iteration is always logged
                    for hook in hooks:
                        hook.on_log(record)
                break
    return losses


def _stop_if_not_finite(
    learner: MetaLearner, loss: float, batch: tuple[Tensor, ...], index: int
) -> None:
    """A ``FloatingPointError`` naming what is not finite after a meta-backward: the loss, or a
    named meta-gradient, and the first inner step whose query loss is not finite."""
    problem = None
    if not math.isfinite(loss):
        problem = f"the meta-loss became {loss}"
    else:
        grads = [(n, p.grad) for n, p in learner.named_parameters() if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for _, g in grads]).all()):
            bad = next(n for n, g in grads if not torch.isfinite(g).all())
            problem = f"the meta-gradient of {bad} became non-finite"
    if problem is None:
        return
    step = _first_bad_inner_step(learner, batch)
    where = f" (the query loss is first non-finite after inner step {step})" if step else ""
    raise FloatingPointError(
        f"{problem} at iteration {index + 1}{where}; the usual cause is an inner learning rate "
        "that is too high (lower --inner-lr) or an outer one (--outer-lr)"
    )


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
    inner_lr: float = DEFAULT_INNER_LR,
    outer_lr: float = 0.001,
    inner_steps: int = DEFAULT_INNER_STEPS,
    first_order: bool = False,
    plus_plus: bool = False,
    *,
    iterations: int | None = None,
    outer_lr_schedule: str | None = None,
    outer_lr_min: float = DEFAULT_OUTER_LR_MIN,
    device: torch.device | str | None = None,
    progress: bool = True,
    **settings: Any,
) -> tuple[nn.Module, MAML, list[float]]:
    """Meta-train ``model`` with MAML, FOMAML (``first_order``) or MAML++ (``plus_plus``).

    ``task_dataloader`` yields ``(support_x, support_y, query_x, query_y)`` task batches (e.g. an
    :class:`mamlkit.data.EpisodeSampler`); it is consumed once, or for ``iterations`` batches.
    The outer optimiser is Adam with ``outer_lr``, on the algorithm's outer learning-rate
    schedule unless ``outer_lr_schedule`` names another (``constant``, or ``cosine``: annealed to
    ``outer_lr_min`` over the run, MAML++'s), built as ``mamlkit train`` builds it, so both give
    the same run. A cosine schedule needs the run's length: ``iterations``, else
    ``len(task_dataloader)``. Returns the trained model, the learner (which holds any learned
    inner learning rates) and the per-iteration meta-losses. ``settings`` go to
    :class:`~mamlkit.MAML` (e.g. ``task="regression"``, ``execution="loop"``). The defaults are
    those of :class:`~mamlkit.MetaLearner` and ``mamlkit train`` (Finn et al.'s Omniglot 5-way
    1-step setting); regression wants a smaller ``inner_lr`` (0.01 for the sinusoid).

    The one-call entry point; :func:`fit` is the same loop with your own optimiser, schedule
    and callbacks. 5-way 1-shot Omniglot (needs the data, so not run here):

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
    scheduler = outer_lr_scheduler(
        optimizer,
        chosen_schedule(learner.algorithm, outer_lr_schedule),
        iterations=_total(task_dataloader, iterations),
        lr_min=outer_lr_min,
    )
    losses = fit(
        learner,
        task_dataloader,
        optimizer,
        iterations=iterations,
        scheduler=scheduler,
        device=device,
        progress=progress,
    )
    return learner.model, learner, losses
