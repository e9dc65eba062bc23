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
from mamlkit.core.inner_loop import (
    LossFn,
    StepView,
    adapt,
    functional_forward,
    weighted_query_loss,
)
from mamlkit.core.per_step import PerStepTables, batch_norm_parameter_names, running_stat_names
from mamlkit.core.step_weights import last_step_weights, msl_weights
from mamlkit.core.update_rules import Params, make_update_rule

DEFAULT_MSL_ANNEAL_ITERATIONS = 5000  # MAML++: 10 epochs of 500 iterations
#: MAML++ derivative-order annealing: "first-order for the first 50 epochs" of 500 iterations
#: (Antoniou et al. 2019, section 4; the released configs switch it off with -1).
DEFAULT_FIRST_ORDER_ITERATIONS = 25000


TASKS = ("classification", "regression")


def check_episode(
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor | None = None,
    query_y: Tensor | None = None,
    *,
    task: str = "classification",
) -> None:
    """Validate task-batched episodes: inputs ``[B, n, ...]`` and targets: int64 labels
    ``[B, n]`` for classification, float targets ``[B, n, ...]`` for regression.

    Every :class:`MetaLearner` method that takes an episode calls it first, so a wrong shape or
    dtype fails with a message that says what to change, not deep inside a forward pass. Support
    and query must agree on the number of tasks and the per-example input shape.

    >>> import torch
    >>> from mamlkit.core import check_episode
    >>> check_episode(torch.randn(2, 5, 4), torch.zeros(2, 5, dtype=torch.int64))
    >>> check_episode(torch.randn(5, 4), torch.zeros(5, dtype=torch.int64))
    Traceback (most recent call last):
        ...
    ValueError: support_x must be task-batched [tasks, examples, ...features], got shape (5, 4);
    add a leading task dimension with x.unsqueeze(0) for one task
    """
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
        if x.shape[0] == 0:
            raise ValueError(
                f"{kind}_x of shape {tuple(x.shape)} holds no tasks (a meta-batch of 0); pass at "
                "least one task"
            )
        if x.shape[1] == 0:
            per_class = "shots" if kind == "support" else "queries"
            raise ValueError(
                f"{kind}_x of shape {tuple(x.shape)} holds no examples per task; every task "
                f"needs at least one {kind} example (ways and {per_class} must be >= 1)"
            )
        if task == "regression":
            if y.dim() < 2 or y.shape[:2] != x.shape[:2] or not y.dtype.is_floating_point:
                raise ValueError(
                    f"{kind}_y must hold float regression targets [tasks, examples, ...] with "
                    f"[tasks, examples] = {tuple(x.shape[:2])}, got {y.dtype} of shape "
                    f"{tuple(y.shape)}"
                )
            continue
        if y.dim() != 2 or y.shape != x.shape[:2]:
            raise ValueError(
                f"{kind}_y must have shape [tasks, examples] = {tuple(x.shape[:2])}, "
                f"got {tuple(y.shape)}"
            )
        if y.dtype != torch.int64:
            hint = (
                " (float targets are regression: MetaLearner(..., task='regression'))"
                if y.dtype.is_floating_point
                else ""
            )
            raise ValueError(f"{kind}_y must hold int64 class labels, got dtype {y.dtype}{hint}")
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
    are shared); :attr:`params` gives them one dict per task. What :meth:`MetaLearner.adapt`
    returns; see :class:`MetaLearner` for an example.

    Attributes:
        forward: the task forward (:mod:`mamlkit.core.execution`) that evaluates them.
        task_params: parameter name -> ``[B, *shape]`` (adapted) or ``shape`` (shared) tensor.
        per_task: the names in ``task_params`` that have a task dimension.
        tasks: ``B``; inputs must be given for exactly these tasks, in the same order.
        classification: whether :meth:`predict` takes the arg-max of the outputs.
    """

    forward: TaskForward
    task_params: dict[str, Tensor]
    per_task: frozenset[str]
    tasks: int
    classification: bool = True

    @property
    def params(self) -> list[dict[str, Tensor]]:
        """One parameter dict per task (tensors that do not adapt are the model's own)."""
        return [task_slice(self.task_params, self.per_task, b) for b in range(self.tasks)]

    def __call__(self, x: Tensor) -> Tensor:
        """Outputs ``[B, n, ...]`` of each task's adapted model on its inputs ``x[b]``."""
        if x.dim() < 3 or x.shape[0] != self.tasks:
            raise ValueError(
                f"expected inputs for {self.tasks} tasks as [tasks, examples, ...], "
                f"got shape {tuple(x.shape)}"
            )
        return self.forward(self.task_params, x)

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class labels ``[B, n]`` (regression: the outputs themselves)."""
        outputs = self(x)
        return outputs.argmax(dim=-1) if self.classification else outputs


@dataclass
class TaskScores:
    """Query loss and accuracy of each task after 0, 1, ..., K inner steps (shape ``[B, K+1]``);
    ``accuracy`` is ``None`` for regression.

    What :meth:`MetaLearner.score_tasks` returns; column 0 scores the un-adapted model, the last
    column the model after K steps (what :func:`mamlkit.evaluate` reports).
    """

    loss: Tensor
    accuracy: Tensor | None


class MetaLearner(nn.Module):
    """A model meta-trained by the algorithm ``algorithm`` (a registered name or a spec).

    Every algorithm (MAML, FOMAML, MAML++, ANIL, Meta-SGD, Reptile and variants) is this one class
    with a different :class:`AlgorithmSpec`. Episodes are task-batched: support inputs
    ``[B, N*K, ...]`` with labels ``[B, N*K]`` and query inputs ``[B, N*Q, ...]`` with labels
    ``[B, N*Q]`` (what :class:`mamlkit.data.EpisodeSampler` yields). Train it with
    :func:`mamlkit.fit` or by hand with :meth:`meta_loss` / :meth:`meta_backward` and any
    optimiser over ``learner.parameters()``; ``learner.iteration`` is the outer iteration that
    the MAML++ schedules follow (:func:`~mamlkit.fit` sets it).

    Args:
        model: any ``nn.Module`` mapping inputs ``[n, ...]`` to logits ``[n, classes]`` (or to
            outputs ``[n, ...]`` matching the targets, for regression).
        algorithm: preset name (see ``mamlkit.ALGORITHMS``) or an :class:`AlgorithmSpec`.
        inner_lr: the (initial) inner learning rate.
        inner_steps: inner gradient steps during meta-training.
        msl_anneal_iterations: MAML++ multi-step-loss annealing length (``msl`` presets only).
        first_order_iterations: outer iterations of first-order meta-gradients before second
            order starts, for presets with ``derivative_annealing`` (MAML++).
        task: ``"classification"`` (int64 labels, accuracy) or ``"regression"`` (float targets).
        loss_fn: task loss; default ``cross_entropy`` for classification, ``mse_loss`` for
            regression.
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

    Meta-training on two 3-way 2-shot tasks of 4 features and adapting to them:

    >>> import torch
    >>> from mamlkit import MetaLearner
    >>> from mamlkit.models import MLP
    >>> learner = MetaLearner(MLP(in_channels=4, num_classes=3, hidden=8), "maml", inner_steps=2)
    >>> support_x, support_y = torch.randn(2, 6, 4), torch.arange(3).repeat(2, 2)
    >>> query_x, query_y = torch.randn(2, 9, 4), torch.arange(3).repeat(2, 3)
    >>> loss, metrics = learner.meta_loss(support_x, support_y, query_x, query_y)
    >>> loss.backward()  # the meta-gradient, through both inner steps
    >>> sorted(metrics), learner.model.head.weight.grad.shape
    (['accuracy', 'loss'], torch.Size([3, 8]))
    >>> adapted = learner.adapt(support_x, support_y)
    >>> adapted.predict(query_x).shape  # a label per query example of each task
    torch.Size([2, 9])
    >>> learner.score_tasks(support_x, support_y, query_x, query_y).accuracy.shape  # 0..2 steps
    torch.Size([2, 3])

    Learned inner learning rates are parameters of the learner too:

    >>> metasgd = MetaLearner(MLP(in_channels=4, num_classes=3, hidden=8), "metasgd")
    >>> sum(p.numel() for p in metasgd.parameters()) == 2 * sum(
    ...     p.numel() for p in metasgd.model.parameters()
    ... )
    True
    """

    def __init__(
        self,
        model: nn.Module,
        algorithm: str | AlgorithmSpec = "maml",
        *,
        inner_lr: float = 0.4,
        inner_steps: int = 1,
        msl_anneal_iterations: int = DEFAULT_MSL_ANNEAL_ITERATIONS,
        first_order_iterations: int = DEFAULT_FIRST_ORDER_ITERATIONS,
        task: str = "classification",
        loss_fn: LossFn | None = None,
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
        if (
            isinstance(first_order_iterations, bool)
            or not isinstance(first_order_iterations, int)
            or first_order_iterations < 0
        ):
            raise ValueError(
                f"first_order_iterations must be an integer >= 0, got {first_order_iterations!r}"
            )
        self.first_order_iterations = first_order_iterations
        if task not in TASKS:
            raise ValueError(f"task {task!r}: choose one of {', '.join(TASKS)}")
        self.task = task
        self.loss_fn = loss_fn or (F.cross_entropy if task == "classification" else F.mse_loss)
        names = [name for name, _ in model.named_parameters()]
        per_step_weights = (
            batch_norm_parameter_names(model) if self.algorithm.bn_per_step_weights else []
        )
        # MAML++ (BNWB): per-step BatchNorm weights are meta-learned only; they do not adapt.
        self.adapt_names = [
            n for n in self.algorithm.adapting(names) if n not in set(per_step_weights)
        ]
        if not self.adapt_names:
            raise ValueError(
                f"adapt patterns {self.algorithm.adapt} match no parameter of the model that can "
                f"adapt; its parameters are {names}"
            )
        self._per_task = frozenset(self.adapt_names)  # names with a task dim in trajectories
        shapes = {n: p.shape for n, p in model.named_parameters()}
        self.inner_update = make_update_rule(
            self.algorithm.update_rule, self.adapt_names, inner_lr, self.inner_steps, shapes
        )
        stats = running_stat_names(model) if self.algorithm.bn_per_step_stats else []
        self.per_step = PerStepTables(model, per_step_weights, stats, self.inner_steps)
        if execution == "batched" and stats:
            raise ValueError(
                "execution='batched' cannot meta-train with per-step BatchNorm running statistics "
                "(BNRS): updating them is a side effect of each task in turn; use "
                "execution='auto' (batched where it can, task by task in training) or switch "
                f"BNRS off ('{self.algorithm.name.split('[')[0]}[bn_per_step_stats=false]')"
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
        self._output_shape: tuple[int, ...] = ()

    # -- pieces ---------------------------------------------------------------------------------
    @property
    def first_order(self) -> bool:
        """Whether meta-gradients are first order at the current ``iteration``."""
        return self.first_order_at(self.iteration)

    def first_order_at(self, iteration: int) -> bool:
        """First order at outer ``iteration``: always for first-order presets; during the first
        ``first_order_iterations`` with derivative-order annealing (MAML++)."""
        if self.algorithm.first_order:
            return True
        return self.algorithm.derivative_annealing and iteration < self.first_order_iterations

    @property
    def _step_view(self) -> StepView | None:
        """The per-step tensor view for the inner loop; ``None`` (the cheap path) without any."""
        return self.per_step.at if self.per_step.active else None

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
            self._output_shape = tuple(out.shape[1:])
        if self.task == "regression":
            for y in labels:
                if tuple(y.shape[2:]) != self._output_shape:
                    raise ValueError(
                        f"regression targets have shape {list(y.shape[2:])} per example but the "
                        f"model outputs {list(self._output_shape)}; build the model with as many "
                        "outputs as the targets have"
                    )
            return
        for kind, y in zip(("support_y", "query_y"), labels, strict=False):
            top = int(y.max())
            if top >= self._num_outputs:
                raise ValueError(
                    f"{kind}: label {top} is out of range: the model predicts "
                    f"{self._num_outputs} classes, so labels must be 0..{self._num_outputs - 1} "
                    "(relabel each task's classes 0..N-1)"
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
            at_step=self._step_view,
        )

    def _adapt_in_chunks(
        self, support_x: Tensor, support_y: Tensor, steps: int, keep: set[int], first_order: bool
    ) -> list[Params | None]:
        """The trajectory of all tasks (``None`` at steps not in ``keep``); first-order runs
        adapt a few tasks at a time.

        A first-order step keeps no graph, so adapting tasks in chunks bounds the memory of the
        support pass (the per-chunk trajectories are joined); second order keeps every task's
        graph until the outer backward anyway, so it adapts all tasks at once.
        """
        tasks = support_x.shape[0]
        size = tasks
        if first_order:
            size = self.support_chunk or auto_support_chunk(
                tasks, support_x.shape[1], support_x.device
            )
        if size >= tasks or self.execution_strategy == "loop":
            params = self._task_params(tasks)
            return self._trajectory(params, support_x, support_y, steps, first_order, keep)
        parts = [
            self._trajectory(
                self._task_params(min(size, tasks - start)),
                support_x[start : start + size],
                support_y[start : start + size],
                steps,
                first_order,
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
        check_episode(support_x, support_y, task=self.task)
        self._check_labels(support_x, support_y)
        steps = self.inner_steps if steps is None else positive_int("steps", steps)
        tracking = torch.is_grad_enabled()
        tasks = support_x.shape[0]
        params = self._task_params(tasks, detach=not tracking)
        first_order = self.first_order or not tracking
        final = self._trajectory(params, support_x, support_y, steps, first_order)[-1]
        if not tracking:
            final = {n: p.detach() for n, p in final.items()}
        # Predictions after K steps use the BatchNorm tensors of the last step (as the query
        # loss after step K does).
        forward = self._task_forward
        if self._step_view is not None:
            last = steps - 1

            def forward(params: Params, x: Tensor) -> Tensor:
                return self._task_forward(self.per_step.at(params, last), x)

        return AdaptedTasks(
            forward, final, self._per_task, tasks, classification=self.task == "classification"
        )

    def _summed_task_losses(
        self,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        weights: list[float],
        first_order: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Sum over these tasks of what the outer loop differentiates, the sum of their
        step-weighted query losses (detached) and the final query outputs (detached).

        For the ``meta`` outer gradient the first two are the same loss. For ``reptile`` the
        differentiated quantity is ``sum_b 0.5 * ||theta - stopgrad(phi_b)||^2`` over the
        adapting tensors, whose gradient is Reptile's ``sum_b (theta - phi_b)``; the query loss
        after adaptation is then only a metric.
        """
        if self.algorithm.outer_gradient == "reptile":
            return self._reptile_surrogate(support_x, support_y, query_x, query_y)
        # Only the steps whose query loss counts are kept (the last always is).
        keep = {index + 1 for index, weight in enumerate(weights) if weight != 0}
        trajectory = self._adapt_in_chunks(
            support_x, support_y, self.inner_steps, keep, first_order
        )
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
                at_step=self._step_view,
            )
            total = chunk_loss if total is None else total + chunk_loss
            final_logits.append(logits[self.inner_steps].detach())
        return total, total.detach(), torch.cat(final_logits)  # type: ignore[union-attr]

    def _reptile_surrogate(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        final = self._adapt_in_chunks(
            support_x, support_y, self.inner_steps, {self.inner_steps}, True
        )[-1]
        theta = self.model_params()
        surrogate = sum(
            0.5 * (theta[n] - final[n].detach()).pow(2).sum()  # type: ignore[index]
            for n in self.adapt_names
        )
        with torch.no_grad():
            logits = self._task_forward(
                self.per_step.at(final, self.inner_steps - 1),
                query_x,  # type: ignore[arg-type]
            )
            query_loss = self._summed_loss(logits, query_y)
        return surrogate, query_loss, logits  # type: ignore[return-value]

    def _metrics(self, loss: float, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        metrics = {"loss": loss}
        if self.task == "classification":
            metrics["accuracy"] = float((outputs.argmax(-1) == targets).float().mean())
        return metrics

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

        Differentiable w.r.t. ``self.parameters()``. ``metrics`` holds ``loss`` (the query loss)
        and, for classification, ``accuracy`` (query accuracy after the last inner step, mean
        over tasks). The graph of every task is kept until you call ``backward``;
        :meth:`meta_backward` bounds that memory. For Reptile the returned tensor is the
        surrogate ``0.5 * mean_b ||theta - phi_b||^2`` whose gradient is the Reptile direction.
        """
        check_episode(support_x, support_y, query_x, query_y, task=self.task)
        self._check_labels(support_x, support_y, query_y)
        it = self.iteration if iteration is None else iteration
        weights = self.step_weights(it).tolist()
        outer, query_loss, outputs = self._summed_task_losses(
            support_x, support_y, query_x, query_y, weights, self.first_order_at(it)
        )
        tasks = support_x.shape[0]
        return outer / tasks, self._metrics(float(query_loss) / tasks, outputs, query_y)

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
        check_episode(support_x, support_y, query_x, query_y, task=self.task)
        self._check_labels(support_x, support_y, query_y)
        it = self.iteration if iteration is None else iteration
        weights = self.step_weights(it).tolist()
        first_order = self.first_order_at(it)
        tasks = support_x.shape[0]
        if tasks_per_backward is None:
            tasks_per_backward = self.tasks_per_backward or tasks
        size = positive_int("tasks_per_backward", tasks_per_backward)
        loss_sum, correct = 0.0, 0.0
        for start in range(0, tasks, size):
            group = slice(start, start + size)
            outer, query_loss, outputs = self._summed_task_losses(
                support_x[group],
                support_y[group],
                query_x[group],
                query_y[group],
                weights,
                first_order,
            )
            (outer / tasks).backward()
            loss_sum += float(query_loss)
            if self.task == "classification":
                hits = (outputs.argmax(-1) == query_y[group]).float()
                correct += float(hits.mean(1).sum())
        metrics = {"loss": loss_sum / tasks}
        if self.task == "classification":
            metrics["accuracy"] = correct / tasks
        return metrics

    def score_tasks(
        self,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        *,
        steps: int | None = None,
    ) -> TaskScores:
        """Query loss (and accuracy) of each task after every inner step; no meta-graph is kept.

        The query pass after step ``k`` uses the per-step BatchNorm tensors of step ``k - 1``
        (of step 0 before adaptation), as during meta-training.
        """
        check_episode(support_x, support_y, query_x, query_y, task=self.task)
        self._check_labels(support_x, support_y, query_y)
        steps = self.inner_steps if steps is None else positive_int("steps", steps)
        params = self._task_params(support_x.shape[0], detach=True)
        trajectory = self._trajectory(params, support_x, support_y, steps, first_order=True)
        classification = self.task == "classification"
        losses, accuracies = [], []
        with torch.no_grad():
            for chunk in self._query_chunks(query_x):
                qx, qy = query_x[chunk], query_y[chunk]
                step_losses, step_accuracies = [], []
                for k, step_params in enumerate(trajectory):
                    chosen = self.per_step.at(
                        task_slice(step_params, self._per_task, chunk),  # type: ignore[arg-type]
                        max(k - 1, 0),
                    )
                    outputs = self._task_forward(chosen, qx)
                    step_losses.append(task_losses(self.loss_fn, outputs, qy))
                    if classification:
                        step_accuracies.append((outputs.argmax(-1) == qy).float().mean(1))
                losses.append(torch.stack(step_losses, dim=1))
                if classification:
                    accuracies.append(torch.stack(step_accuracies, dim=1))
        return TaskScores(torch.cat(losses), torch.cat(accuracies) if classification else None)

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
    (the ``mamlpp`` preset: multi-step loss, per-layer per-step learned LRs, per-step BatchNorm
    weights, derivative-order annealing, cosine meta LR); both flags: first-order MAML++.

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
