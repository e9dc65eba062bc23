"""``MetaLearner``: a model plus an algorithm preset, one ``nn.Module`` the outer optimiser trains.

``learner.parameters()`` holds everything the outer loop updates: the model's weights and the
update rule's learned inner learning rates (if any). The class only wires the functional pieces
of :mod:`mamlkit.core.inner_loop` together; algorithms differ by their :class:`AlgorithmSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamlkit.checks import positive_int
from mamlkit.core.algorithms import AlgorithmSpec, resolve_algorithm
from mamlkit.core.execution import (
    TaskForward,
    auto_query_chunk,
    auto_support_chunk,
    make_task_forward,
    task_losses,
    task_slice,
)
from mamlkit.core.inner_loop import LossFn, adapt, functional_forward, weighted_query_loss
from mamlkit.core.step_weights import last_step_weights, msl_weights
from mamlkit.core.update_rules import Params, make_update_rule

DEFAULT_MSL_ANNEAL_ITERATIONS = 5000  # MAML++: 10 epochs of 500 iterations


def check_episode(
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor | None = None,
    query_y: Tensor | None = None,
) -> None:
    """Validate task-batched episodes: inputs ``[B, n, C, H, W]``, int64 labels ``[B, n]``."""
    pairs = [("support", support_x, support_y)]
    if query_x is not None or query_y is not None:
        if query_x is None or query_y is None:
            raise ValueError("pass both query_x and query_y, or neither")
        pairs.append(("query", query_x, query_y))
    for kind, x, y in pairs:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(f"{kind}_x and {kind}_y must be torch tensors")
        if x.dim() < 3:
            raise ValueError(
                f"{kind}_x must be task-batched [tasks, examples, ...features], got shape "
                f"{tuple(x.shape)}; add a leading task dimension with x.unsqueeze(0) for one task"
            )
        if y.dim() != 2 or y.shape != x.shape[:2]:
            raise ValueError(
                f"{kind}_y must have shape [tasks, examples] = {tuple(x.shape[:2])}, "
                f"got {tuple(y.shape)}"
            )
        if y.dtype != torch.int64:
            raise ValueError(f"{kind}_y must hold int64 class labels, got dtype {y.dtype}")
        if y.numel() and int(y.min()) < 0:
            raise ValueError(f"{kind}_y has a negative label ({int(y.min())}); labels are 0..N-1")
    if len(pairs) == 2:
        if support_x.shape[0] != query_x.shape[0]:  # type: ignore[union-attr]
            raise ValueError(
                f"support has {support_x.shape[0]} tasks but query has {query_x.shape[0]}"  # type: ignore[union-attr]
            )
        if support_x.shape[2:] != query_x.shape[2:]:  # type: ignore[union-attr]
            raise ValueError(
                f"support inputs have shape {tuple(support_x.shape[2:])} per example but query "
                f"inputs have {tuple(query_x.shape[2:])}; both must match the model's input"  # type: ignore[union-attr]
            )


@dataclass
class AdaptedTasks:
    """Adapted parameters of a batch of tasks; call it on new inputs of them (``[B, n, ...]``).

    ``task_params`` holds the adapted tensors as ``[B, *shape]`` (the tensors that do not adapt
    are shared); :attr:`params` gives them one dict per task.
    """

    forward: TaskForward
    task_params: dict[str, Tensor]
    per_task: frozenset[str]
    tasks: int

    @property
    def params(self) -> list[dict[str, Tensor]]:
        """One parameter dict per task (tensors that do not adapt are the model's own)."""
        return [task_slice(self.task_params, self.per_task, b) for b in range(self.tasks)]

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[0] != self.tasks:
            raise ValueError(
                f"expected inputs for {self.tasks} tasks as [tasks, examples, ...], "
                f"got shape {tuple(x.shape)}"
            )
        return self.forward(self.task_params, x)

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class labels ``[B, n]``."""
        return self(x).argmax(dim=-1)


@dataclass
class TaskScores:
    """Query loss and accuracy of each task after 0, 1, ..., K inner steps (shape ``[B, K+1]``)."""

    loss: Tensor
    accuracy: Tensor


class MetaLearner(nn.Module):
    """A model meta-trained by the algorithm ``algorithm`` (a registered name or a spec).

    Args:
        model: any ``nn.Module`` mapping inputs ``[n, ...]`` to logits ``[n, classes]``.
        algorithm: preset name (see ``mamlkit.ALGORITHMS``) or an :class:`AlgorithmSpec`.
        inner_lr: the (initial) inner learning rate.
        inner_steps: inner gradient steps during meta-training.
        msl_anneal_iterations: MAML++ multi-step-loss annealing length (``msl`` presets only).
        loss_fn: task loss, ``cross_entropy`` by default.
        execution: how tasks are run: ``"auto"`` (default; all tasks in one batched program
            where the model allows, else one by one), ``"batched"`` or ``"loop"`` to force one
            (see :mod:`mamlkit.core.execution`; both give the same gradients).
        query_chunk: tasks whose query sets are evaluated together; ``None`` picks by device and
            query-set size (:func:`mamlkit.core.execution.auto_query_chunk`).
        support_chunk: tasks adapted together in first-order runs (bounds memory); ``None`` picks
            by device and support-set size (:func:`mamlkit.core.execution.auto_support_chunk`).
        tasks_per_backward: tasks that :meth:`meta_backward` (and so :func:`mamlkit.fit`)
            backpropagates at a time; ``None``: all of them (fastest, most memory).
        **overrides: replace preset settings, e.g. ``update_rule="per_tensor"``.
    """

    def __init__(
        self,
        model: nn.Module,
        algorithm: str | AlgorithmSpec = "maml",
        *,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        msl_anneal_iterations: int = DEFAULT_MSL_ANNEAL_ITERATIONS,
        loss_fn: LossFn = F.cross_entropy,
        execution: str = "auto",
        query_chunk: int | None = None,
        support_chunk: int | None = None,
        tasks_per_backward: int | None = None,
        **overrides: object,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.algorithm = resolve_algorithm(algorithm, **overrides)
        self.inner_steps = positive_int("inner_steps", inner_steps)
        if isinstance(msl_anneal_iterations, bool) or not isinstance(msl_anneal_iterations, int):
            raise ValueError(
                f"msl_anneal_iterations must be an integer, got {msl_anneal_iterations!r}"
            )
        self.msl_anneal_iterations = msl_anneal_iterations
        self.loss_fn = loss_fn
        names = [name for name, _ in model.named_parameters()]
        self.adapt_names = self.algorithm.adapting(names)
        if not self.adapt_names:
            raise ValueError(
                f"adapt patterns {self.algorithm.adapt} match no parameter of the model; "
                f"its parameters are {names}"
            )
        self._per_task = frozenset(self.adapt_names)  # names with a task dim in trajectories
        self.inner_update = make_update_rule(
            self.algorithm.update_rule, self.adapt_names, inner_lr, self.inner_steps
        )
        self.iteration = 0  # outer iteration, drives the MSL annealing; set by the training loop
        self._forward = functional_forward(model)
        self._task_forward = make_task_forward(model, execution)
        self.execution = execution
        self.query_chunk = None if query_chunk is None else positive_int("query_chunk", query_chunk)
        self.support_chunk = (
            None if support_chunk is None else positive_int("support_chunk", support_chunk)
        )
        self.tasks_per_backward = (
            None
            if tasks_per_backward is None
            else positive_int("tasks_per_backward", tasks_per_backward)
        )
        self._num_outputs: int | None = None
        self._checked_shape: tuple[int, ...] | None = None

    # -- pieces ---------------------------------------------------------------------------------
    @property
    def first_order(self) -> bool:
        return self.algorithm.first_order

    def model_params(self) -> Params:
        """The model's parameters by name (the starting point theta_0 of every task)."""
        return dict(self.model.named_parameters())

    def step_weights(self, iteration: int | None = None) -> Tensor:
        """Weights of the query loss after each inner step at outer ``iteration``."""
        if self.algorithm.step_loss == "msl":
            it = self.iteration if iteration is None else iteration
            return msl_weights(self.inner_steps, it, self.msl_anneal_iterations)
        return last_step_weights(self.inner_steps)

    def _check_labels(self, support_x: Tensor, *labels: Tensor) -> None:
        shape = tuple(support_x.shape[2:])
        if self._num_outputs is None or self._checked_shape != shape:
            with torch.no_grad():
                try:
                    out = self._forward(self.model_params(), support_x[0])
                except RuntimeError as error:
                    raise ValueError(
                        f"the model cannot take inputs of shape {list(shape)} per example "
                        f"({type(self.model).__name__}: {str(error).splitlines()[0]}); check the "
                        "model's input size against the data"
                    ) from error
            self._num_outputs, self._checked_shape = int(out.shape[-1]), shape
        top = max(int(y.max()) for y in labels if y.numel())
        if top >= self._num_outputs:
            raise ValueError(
                f"label {top} is out of range: the model predicts {self._num_outputs} classes, so "
                f"labels must be 0..{self._num_outputs - 1} (relabel each task's classes 0..N-1)"
            )

    @property
    def execution_strategy(self) -> str:
        """The strategy running now: ``"batched"`` or ``"loop"`` (see ``execution``)."""
        return self._task_forward.name

    def _task_params(self, tasks: int, *, detach: bool = False) -> Params:
        """theta_0 of ``tasks`` tasks: adapting tensors expanded to ``[tasks, ...]`` (a view)."""
        params = self.model_params()
        if detach:
            params = {n: p.detach() for n, p in params.items()}
        return {
            n: (p.expand(tasks, *p.shape) if n in self.adapt_names else p)
            for n, p in params.items()
        }

    def _summed_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        # Sum over tasks: each task's gradient w.r.t. its own weights is its own loss's gradient.
        return task_losses(self.loss_fn, outputs, targets).sum()

    def _trajectory(
        self,
        params: Params,
        x: Tensor,
        y: Tensor,
        steps: int,
        first_order: bool,
        keep: set[int] | None = None,
    ) -> list[Params | None]:
        return adapt(
            self._task_forward,
            params,
            x,
            y,
            update=self.inner_update,
            steps=steps,
            first_order=first_order,
            names=self.adapt_names,
            loss_fn=self._summed_loss,
            keep=keep,
        )

    def _adapt_in_chunks(
        self, support_x: Tensor, support_y: Tensor, steps: int, keep: set[int]
    ) -> list[Params | None]:
        """The trajectory of all tasks (``None`` at steps not in ``keep``); first-order runs
        adapt a few tasks at a time.

        A first-order step keeps no graph, so adapting tasks in chunks bounds the memory of the
        support pass (the per-chunk trajectories are joined); second order keeps every task's
        graph until the outer backward anyway, so it adapts all tasks at once.
        """
        tasks = support_x.shape[0]
        size = tasks
        if self.first_order:
            size = self.support_chunk or auto_support_chunk(
                tasks, support_x.shape[1], support_x.device
            )
        if size >= tasks or self.execution_strategy == "loop":
            params = self._task_params(tasks)
            return self._trajectory(params, support_x, support_y, steps, self.first_order, keep)
        parts = [
            self._trajectory(
                self._task_params(min(size, tasks - start)),
                support_x[start : start + size],
                support_y[start : start + size],
                steps,
                self.first_order,
                keep,
            )
            for start in range(0, tasks, size)
        ]
        return [
            None
            if parts[0][k] is None
            else {
                n: (torch.cat([part[k][n] for part in parts]) if n in self._per_task else v)  # type: ignore[index]
                for n, v in parts[0][k].items()  # type: ignore[union-attr]
            }
            for k in range(steps + 1)
        ]

    def _query_chunks(self, query_x: Tensor) -> list[slice]:
        tasks = query_x.shape[0]
        size = self.query_chunk or auto_query_chunk(tasks, query_x.shape[1], query_x.device)
        if self.execution_strategy == "loop":
            size = tasks  # the loop runs task by task anyway
        return [slice(start, start + size) for start in range(0, tasks, size)]

    # -- public API -----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """The un-adapted model's logits (the meta-learned initialisation)."""
        return self.model(x)

    def adapt(
        self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None
    ) -> AdaptedTasks:
        """Adapt to each task of a batch; returns a callable predicting on new inputs per task.

        Under ``torch.no_grad()`` the result is detached (cheap inference); otherwise it stays
        differentiable w.r.t. ``self.parameters()`` in the algorithm's order.
        """
        check_episode(support_x, support_y)
        self._check_labels(support_x, support_y)
        steps = self.inner_steps if steps is None else positive_int("steps", steps)
        tracking = torch.is_grad_enabled()
        tasks = support_x.shape[0]
        params = self._task_params(tasks, detach=not tracking)
        first_order = self.first_order or not tracking
        final = self._trajectory(params, support_x, support_y, steps, first_order)[-1]
        if not tracking:
            final = {n: p.detach() for n, p in final.items()}
        return AdaptedTasks(self._task_forward, final, self._per_task, tasks)

    def _summed_task_losses(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor, weights
    ) -> tuple[Tensor, Tensor]:
        """Sum over these tasks of their step-weighted query losses, and final query logits."""
        # Only the steps whose query loss counts are kept (the last always is).
        keep = {index + 1 for index, weight in enumerate(weights) if weight != 0}
        trajectory = self._adapt_in_chunks(support_x, support_y, self.inner_steps, keep)
        total: Tensor | None = None
        final_logits = []
        for chunk in self._query_chunks(query_x):
            steps = [
                None if p is None else task_slice(p, self._per_task, chunk) for p in trajectory
            ]
            chunk_loss, logits = weighted_query_loss(
                self._task_forward,
                steps,
                query_x[chunk],
                query_y[chunk],
                weights,
                loss_fn=self._summed_loss,
            )
            total = chunk_loss if total is None else total + chunk_loss
            final_logits.append(logits[self.inner_steps].detach())
        return total, torch.cat(final_logits)  # type: ignore[return-value]

    def meta_loss(
        self,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        *,
        iteration: int | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Mean over tasks of the (step-weighted) query loss after adaptation.

        Differentiable w.r.t. ``self.parameters()``. ``metrics`` holds ``loss`` and ``accuracy``
        (query accuracy after the last inner step, mean over tasks). The graph of every task is
        kept until you call ``backward``; :meth:`meta_backward` bounds that memory.
        """
        check_episode(support_x, support_y, query_x, query_y)
        self._check_labels(support_x, support_y, query_y)
        weights = self.step_weights(iteration).tolist()
        total, logits = self._summed_task_losses(support_x, support_y, query_x, query_y, weights)
        loss = total / support_x.shape[0]
        accuracy = (logits.argmax(-1) == query_y).float().mean()
        return loss, {"loss": float(loss.detach()), "accuracy": float(accuracy)}

    def meta_backward(
        self,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        *,
        iteration: int | None = None,
        tasks_per_backward: int | None = None,
    ) -> dict[str, float]:
        """``meta_loss(...)[0].backward()``, a few tasks at a time; returns the metrics.

        Gradients accumulate into ``.grad`` as with ``backward`` (zero them first). Each group of
        ``tasks_per_backward`` tasks (default: the learner's ``tasks_per_backward``, else all)
        is adapted, scored and backpropagated before the next starts, so peak memory is that of
        one group; the gradients equal those of :meth:`meta_loss` up to float rounding.
        """
        check_episode(support_x, support_y, query_x, query_y)
        self._check_labels(support_x, support_y, query_y)
        weights = self.step_weights(iteration).tolist()
        tasks = support_x.shape[0]
        size = tasks_per_backward or self.tasks_per_backward or tasks
        size = positive_int("tasks_per_backward", size)
        loss_sum, correct = 0.0, 0.0
        for start in range(0, tasks, size):
            group = slice(start, start + size)
            total, logits = self._summed_task_losses(
                support_x[group], support_y[group], query_x[group], query_y[group], weights
            )
            (total / tasks).backward()
            loss_sum += float(total.detach())
            correct += float((logits.argmax(-1) == query_y[group]).float().mean(1).sum())
        return {"loss": loss_sum / tasks, "accuracy": correct / tasks}

    def score_tasks(
        self,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        *,
        steps: int | None = None,
    ) -> TaskScores:
        """Query loss and accuracy of each task after every inner step (no meta-graph is kept)."""
        check_episode(support_x, support_y, query_x, query_y)
        self._check_labels(support_x, support_y, query_y)
        steps = self.inner_steps if steps is None else positive_int("steps", steps)
        params = self._task_params(support_x.shape[0], detach=True)
        trajectory = self._trajectory(params, support_x, support_y, steps, first_order=True)
        losses, accuracies = [], []
        with torch.no_grad():
            for chunk in self._query_chunks(query_x):
                qx, qy = query_x[chunk], query_y[chunk]
                step_losses, step_accuracies = [], []
                for step_params in trajectory:
                    logits = self._task_forward(task_slice(step_params, self._per_task, chunk), qx)
                    step_losses.append(task_losses(self.loss_fn, logits, qy))
                    step_accuracies.append((logits.argmax(-1) == qy).float().mean(1))
                losses.append(torch.stack(step_losses, dim=1))
                accuracies.append(torch.stack(step_accuracies, dim=1))
        return TaskScores(torch.cat(losses), torch.cat(accuracies))

    def learned_inner_lrs(self) -> dict[str, list[float]]:
        """Current inner learning rates per adapting tensor and step (constant for ``fixed``)."""
        return self.inner_update.learned_rates()


_PRESET_BY_FLAGS = {
    (False, False): "maml",
    (True, False): "fomaml",
    (False, True): "mamlpp",
    (True, True): "fomamlpp",
}


class MAML(MetaLearner):
    """The seed document's entry point: flip ``first_order`` / ``plus_plus`` to switch algorithm.

    ``MAML(model)`` is MAML (Finn 2017); ``first_order=True`` FOMAML; ``plus_plus=True`` MAML++
    (multi-step loss + per-layer per-step learned LRs); both flags: first-order MAML++.

    >>> import torch, mamlkit
    >>> learner = mamlkit.MAML(torch.nn.Linear(4, 3), inner_lr=0.1, inner_steps=2, plus_plus=True)
    >>> learner.algorithm.name
    'mamlpp'
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        first_order: bool = False,
        plus_plus: bool = False,
        **settings: object,
    ) -> None:
        for flag, value in (("first_order", first_order), ("plus_plus", plus_plus)):
            if not isinstance(value, bool):
                raise ValueError(f"{flag} must be True or False, got {value!r}")
        preset = _PRESET_BY_FLAGS[(first_order, plus_plus)]
        super().__init__(model, preset, inner_lr=inner_lr, inner_steps=inner_steps, **settings)  # type: ignore[arg-type]
