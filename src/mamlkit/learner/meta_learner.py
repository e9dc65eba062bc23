"""``MetaLearner``: a model plus an algorithm, one ``nn.Module`` the outer optimiser trains.

``learner.parameters()`` holds everything the outer loop updates: the model's weights, the update
rule's learned inner learning rates and any per-step tables. The class wires the functional
pieces of :mod:`mamlkit.core` to an execution backend (:mod:`mamlkit.backends`) and asks the
algorithm's hooks (:mod:`mamlkit.algorithms.hooks`) everything an algorithm decides: which
parameters adapt, how step losses are weighted, when the meta-gradient is first order, what the
outer loop differentiates. It never looks at an algorithm's name.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamlkit.algorithms import DEFAULT_ALGORITHM, AlgorithmSpec, resolve_algorithm
from mamlkit.backends import (
    ChunkPolicy,
    auto_tasks_per_backward,
    differentiated_once,
    join_trajectories,
    make_task_forward,
    task_losses,
)
from mamlkit.backends import task_slice as slice_tasks
from mamlkit.checks import positive_int
from mamlkit.core.inner_loop import (
    Forward,
    LossFn,
    StepView,
    adapt,
    functional_forward,
    weighted_query_loss,
)
from mamlkit.core.per_step import PerStepTables
from mamlkit.core.update_rules import make_update_rule
from mamlkit.episodes import Episode, check_episode, check_targets
from mamlkit.learner.results import AdaptedTasks, TaskScores
from mamlkit.vocabulary import Params, TaskKind

#: The default inner learning rate everywhere (learner, ``MAML``, ``train_maml``, the CLI):
#: Finn et al.'s Omniglot 5-way value.
DEFAULT_INNER_LR = 0.4
#: The default inner steps in meta-training everywhere: Finn et al.'s Omniglot 5-way value.
DEFAULT_INNER_STEPS = 1

_SPEC_SETTINGS = frozenset(f.name for f in dataclasses.fields(AlgorithmSpec))


class MetaLearner(nn.Module):
    """A model meta-trained by the algorithm ``algorithm`` (a registered name or a spec).

    Every algorithm (MAML, FOMAML, MAML++, ANIL, BOIL, Meta-SGD, Reptile and variants) is this
    one class with a different :class:`~mamlkit.AlgorithmSpec`. Episodes are task-batched:
    support inputs ``[B, N*K, ...]`` with labels ``[B, N*K]`` and query inputs ``[B, N*Q, ...]``
    with labels ``[B, N*Q]`` (what :class:`mamlkit.data.EpisodeSampler` yields). Train it with
    :func:`mamlkit.fit` or by hand with :meth:`meta_loss` / :meth:`meta_backward` and any
    optimiser over ``learner.parameters()``; ``learner.iteration`` is the outer iteration that
    schedules such as MAML++'s follow (:func:`~mamlkit.fit` sets it).

    Args:
        model: any ``nn.Module`` mapping inputs ``[n, ...]`` to logits ``[n, classes]`` (or to
            outputs ``[n, ...]`` matching the targets, for regression).
        algorithm: preset name (see ``mamlkit.ALGORITHMS``) or an :class:`~mamlkit.AlgorithmSpec`.
        inner_lr: the (initial) inner learning rate.
        inner_steps: inner gradient steps during meta-training.
        task: ``"classification"`` (int64 labels, accuracy) or ``"regression"`` (float targets);
            a :class:`~mamlkit.vocabulary.TaskKind`.
        loss_fn: task loss; default ``cross_entropy`` for classification, ``mse_loss`` for
            regression.
        execution: how tasks are run: ``"auto"`` (default; all tasks in one batched program
            where the model allows, else one by one), ``"batched"`` or ``"loop"`` to force one
            (see :mod:`mamlkit.backends`; both give the same gradients).
        query_chunk: tasks whose query sets are evaluated together; ``None`` picks by device and
            query-set size (:func:`mamlkit.backends.auto_query_chunk`).
        support_chunk: tasks adapted together in first-order runs (bounds memory); ``None`` picks
            by device and support-set size (:func:`mamlkit.backends.auto_support_chunk`).
        tasks_per_backward: tasks that :meth:`meta_backward` (and so :func:`mamlkit.fit`)
            backpropagates at a time; ``None`` picks by device and order
            (:func:`mamlkit.backends.auto_tasks_per_backward`: on CPU 8 tasks batched, one by one
            when tasks run in a loop; all tasks on CUDA).
        **settings: algorithm settings to replace (e.g. ``update_rule="per_tensor"``) and options
            of its components (e.g. ``msl_anneal_iterations`` and ``first_order_iterations`` for
            MAML++; default: the algorithm's own, see :mod:`mamlkit.algorithms.mamlpp`).

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
        algorithm: str | AlgorithmSpec = DEFAULT_ALGORITHM,
        *,
        inner_lr: float = DEFAULT_INNER_LR,
        inner_steps: int = DEFAULT_INNER_STEPS,
        task: TaskKind | str = TaskKind.CLASSIFICATION,
        loss_fn: LossFn | None = None,
        execution: str = "auto",
        query_chunk: int | None = None,
        support_chunk: int | None = None,
        tasks_per_backward: int | None = None,
        **settings: object,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        overrides = {k: v for k, v in settings.items() if k in _SPEC_SETTINGS}
        options = {k: v for k, v in settings.items() if k not in _SPEC_SETTINGS}
        self.algorithm = resolve_algorithm(algorithm, **overrides)
        #: The algorithm's behaviour (:class:`~mamlkit.algorithms.AlgorithmHooks`).
        self.hooks = self.algorithm.hooks(**options)
        self.inner_steps = positive_int("inner_steps", inner_steps)
        self.task = TaskKind.parse(task)
        classification = self.task == TaskKind.CLASSIFICATION
        self.loss_fn = loss_fn or (F.cross_entropy if classification else F.mse_loss)
        names = [name for name, _ in model.named_parameters()]
        per_step_weights = self.hooks.per_step_parameters(model)
        # Tensors with a copy per step are meta-learned only; they do not adapt.
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
        stats = self.hooks.per_step_buffers(model)
        self.per_step = PerStepTables(model, per_step_weights, stats, self.inner_steps)
        refusal = self.hooks.refusal("batched") if execution == "batched" and stats else None
        if refusal:
            raise ValueError(refusal)
        self.iteration = 0  # outer iteration, drives the algorithm's schedules; set by fit
        self._forward = functional_forward(model)
        self._task_forward = make_task_forward(
            model, execution, ChunkPolicy(query_chunk, support_chunk)
        )
        self.execution = execution
        self.tasks_per_backward = (
            None
            if tasks_per_backward is None
            else positive_int("tasks_per_backward", tasks_per_backward)
        )
        self._checked_shape: tuple[int, ...] | None = None
        self._output_shape: tuple[int, ...] = ()
        self._query_gradients_early = False  # set by meta_backward (see _query_loss_early)

    # -- what the algorithm decides -------------------------------------------------------------
    @property
    def first_order(self) -> bool:
        """Whether meta-gradients are first order at the current ``iteration``."""
        return self.first_order_at(self.iteration)

    def first_order_at(self, iteration: int) -> bool:
        """Whether meta-gradients are first order at outer ``iteration`` (always for first-order
        algorithms; early on with MAML++'s derivative-order annealing)."""
        return self.hooks.first_order_at(iteration)

    def step_weights(self, iteration: int | None = None) -> Tensor:
        """Weights of the query loss after each inner step at outer ``iteration``."""
        it = self.iteration if iteration is None else iteration
        return self.hooks.step_weights(self.inner_steps, it)

    @property
    def execution_strategy(self) -> str:
        """The strategy running now: ``"batched"`` or ``"loop"`` (see ``execution``)."""
        return self._task_forward.name

    # -- the pieces an outer objective uses (see mamlkit.algorithms.hooks.TaskRun) ---------------
    def model_params(self) -> Params:
        """The model's parameters by name (the starting point theta_0 of every task)."""
        return dict(self.model.named_parameters())

    def summed_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The task loss summed over tasks: each task's gradient w.r.t. its own weights is then
        its own loss's gradient."""
        return task_losses(self.loss_fn, outputs, targets).sum()

    def trajectory(
        self, support_x: Tensor, support_y: Tensor, *, keep: set[int], first_order: bool
    ) -> list[Params | None]:
        """Every task's parameters after 0..K inner steps (``None`` at steps not in ``keep``);
        the tasks are adapted in the groups the backend's memory policy says, then joined."""
        slices = self._task_forward.support_groups(support_x, first_order=first_order)
        if len(slices) == 1:
            params = self._task_params(support_x.shape[0])
            return self._adapt(params, support_x, support_y, self.inner_steps, first_order, keep)
        parts = [
            self._adapt(
                self._task_params(support_x[group].shape[0]),
                support_x[group],
                support_y[group],
                self.inner_steps,
                first_order,
                keep,
            )
            for group in slices
        ]
        return join_trajectories(parts, self._per_task)

    def query_loss(
        self,
        trajectory: list[Params | None],
        query_x: Tensor,
        query_y: Tensor,
        weights: list[float],
    ) -> tuple[Tensor, Tensor]:
        """The step-weighted query loss summed over tasks, and the final query outputs
        (detached)."""
        if self._query_gradients_early and torch.is_grad_enabled():
            return self._query_loss_early(trajectory, query_x, query_y, weights)
        total: Tensor | None = None
        final_outputs = []
        for group in self._task_forward.query_groups(query_x):
            steps = [
                None if p is None else slice_tasks(p, self._per_task, group) for p in trajectory
            ]
            loss, outputs = weighted_query_loss(
                _once(self._task_forward),
                steps,
                query_x[group],
                query_y[group],
                weights,
                loss_fn=self.summed_loss,
                at_step=self._step_view,
            )
            total = loss if total is None else total + loss
            final_outputs.append(outputs[self.inner_steps].detach())
        return total, torch.cat(final_outputs)  # type: ignore[return-value]

    def _query_loss_early(
        self,
        trajectory: list[Params | None],
        query_x: Tensor,
        query_y: Tensor,
        weights: list[float],
    ) -> tuple[Tensor, Tensor]:
        """:meth:`query_loss` for a backward that follows at once: each group of query sets is
        differentiated w.r.t. the adapted weights it reads as soon as it is scored, one scored
        step at a time, so its activations are freed before the next group or step runs, and
        the returned loss carries those gradients into the inner loop (its value is the query
        loss, its gradient the meta-gradient; a second derivative of it is not the query loss's).

        Peak memory is then the inner loop's graph plus one group's query activations at one
        step, instead of every task's query activations at every scored step until the outer
        backward.
        """
        loss_sum = query_x.new_zeros(())
        carry: Tensor | None = None  # sum of <adapted tensor, its query gradient>
        final_outputs = []
        counted = [index for index, weight in enumerate(weights) if weight != 0.0]
        forward = _once(self._task_forward)
        for group in self._task_forward.query_groups(query_x):
            # One step at a time: with a loss after every step (MAML++'s multi-step loss) only
            # one step's query activations are alive at once.
            for index in counted:
                params = slice_tasks(trajectory[index + 1], self._per_task, group)  # type: ignore[arg-type]
                if self._step_view is not None:
                    params = self._step_view(params, index)
                stand_ins = {
                    name: tensor.detach().requires_grad_(tensor.requires_grad)
                    for name, tensor in params.items()
                }
                reads = [name for name, tensor in params.items() if tensor.requires_grad]
                steps: list[Params | None] = [None] * len(trajectory)
                steps[index + 1] = stand_ins
                only = [weight if k == index else 0.0 for k, weight in enumerate(weights)]
                loss, outputs = weighted_query_loss(
                    forward, steps, query_x[group], query_y[group], only, loss_fn=self.summed_loss
                )
                if reads:
                    grads = torch.autograd.grad(
                        loss, [stand_ins[name] for name in reads], allow_unused=True
                    )
                    for name, grad in zip(reads, grads, strict=True):
                        if grad is not None:
                            term = (params[name] * grad).sum()
                            carry = term if carry is None else carry + term
                loss_sum = loss_sum + loss.detach()
                if index + 1 == self.inner_steps:
                    final_outputs.append(outputs[self.inner_steps].detach())
        total = loss_sum if carry is None else loss_sum + (carry - carry.detach())
        return total, torch.cat(final_outputs)

    def outputs_after(self, final: Params, x: Tensor) -> Tensor:
        """Outputs of adapted tasks on ``x``, with the per-step tensors of the last step."""
        with differentiated_once():
            return self._task_forward(self.per_step.at(final, self.inner_steps - 1), x)

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
        self._check(support_x, support_y)
        steps = self.inner_steps if steps is None else positive_int("steps", steps)
        tracking = torch.is_grad_enabled()
        tasks = support_x.shape[0]
        params = self._task_params(tasks, detach=not tracking)
        first_order = self.first_order or not tracking
        final = self._adapt(params, support_x, support_y, steps, first_order)[-1]
        if not tracking:
            final = {n: p.detach() for n, p in final.items()}  # type: ignore[union-attr]
        # Predictions after K steps use the per-step tensors of the last step (as the query
        # loss after step K does).
        forward = self._task_forward
        if self._step_view is not None:
            last = steps - 1

            def forward(params: Params, x: Tensor) -> Tensor:
                return self._task_forward(self.per_step.at(params, last), x)

        classification = self.task == TaskKind.CLASSIFICATION
        return AdaptedTasks(forward, final, self._per_task, tasks, classification)  # type: ignore[arg-type]

    def meta_loss(
        self,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        *,
        iteration: int | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Mean over tasks of the algorithm's outer objective (for most, the step-weighted query
        loss after adaptation).

        Differentiable w.r.t. ``self.parameters()``. ``metrics`` holds ``loss`` (the query loss)
        and, for classification, ``accuracy`` (query accuracy after the last inner step, mean
        over tasks). The graph of every task is kept until you call ``backward``;
        :meth:`meta_backward` bounds that memory. For Reptile the returned tensor is the
        surrogate ``0.5 * mean_b ||theta - phi_b||^2`` whose gradient is the Reptile direction.
        """
        self._check(support_x, support_y, query_x, query_y)
        it = self.iteration if iteration is None else iteration
        episode = Episode(support_x, support_y, query_x, query_y)
        weights = self.step_weights(it).tolist()
        outer, query_loss, outputs = self.hooks.objective(
            self, episode, weights, self.first_order_at(it)
        )
        tasks = support_x.shape[0]
        metrics = {"loss": float(query_loss) / tasks}
        if self.task == TaskKind.CLASSIFICATION:
            metrics["accuracy"] = float((outputs.argmax(-1) == query_y).float().mean())
        return outer / tasks, metrics

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
        ``tasks_per_backward`` tasks (default: the learner's ``tasks_per_backward``, else
        :func:`~mamlkit.backends.auto_tasks_per_backward`) is adapted, scored and backpropagated
        before the next starts, so peak memory is that of one group. Within a group each set of
        query sets is differentiated w.r.t. the adapted weights as soon as it is scored (its
        activations freed), then one backward runs through the inner loops. The gradients equal
        those of :meth:`meta_loss` up to float rounding.
        """
        self._check(support_x, support_y, query_x, query_y)
        it = self.iteration if iteration is None else iteration
        weights = self.step_weights(it).tolist()
        first_order = self.first_order_at(it)
        tasks = support_x.shape[0]
        if tasks_per_backward is None:
            tasks_per_backward = self.tasks_per_backward or auto_tasks_per_backward(
                tasks, strategy=self.execution_strategy, device=support_x.device
            )
        size = positive_int("tasks_per_backward", tasks_per_backward)
        classification = self.task == TaskKind.CLASSIFICATION
        loss_sum, correct = 0.0, 0.0
        for start in range(0, tasks, size):
            group = slice(start, start + size)
            episode = Episode(support_x[group], support_y[group], query_x[group], query_y[group])
            self._query_gradients_early = True  # the backward follows at once
            try:
                outer, query_loss, outputs = self.hooks.objective(
                    self, episode, weights, first_order
                )
            finally:
                self._query_gradients_early = False
            (outer / tasks).backward()
            loss_sum += float(query_loss)
            if classification:
                hits = (outputs.argmax(-1) == query_y[group]).float()
                correct += float(hits.mean(1).sum())
        metrics = {"loss": loss_sum / tasks}
        if classification:
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

        The query pass after step ``k`` uses the per-step tensors of step ``k - 1`` (of step 0
        before adaptation), as during meta-training.
        """
        self._check(support_x, support_y, query_x, query_y)
        steps = self.inner_steps if steps is None else positive_int("steps", steps)
        params = self._task_params(support_x.shape[0], detach=True)
        trajectory = self._adapt(params, support_x, support_y, steps, first_order=True)
        classification = self.task == TaskKind.CLASSIFICATION
        losses, accuracies = [], []
        with torch.no_grad():
            for group in self._task_forward.query_groups(query_x):
                qx, qy = query_x[group], query_y[group]
                step_losses, step_accuracies = [], []
                for k, step_params in enumerate(trajectory):
                    chosen = self.per_step.at(
                        slice_tasks(step_params, self._per_task, group),  # type: ignore[arg-type]
                        max(k - 1, 0),
                    )
                    with differentiated_once():
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

    # -- internals ------------------------------------------------------------------------------
    @property
    def _step_view(self) -> StepView | None:
        """The per-step tensor view for the inner loop; ``None`` (the cheap path) without any."""
        return self.per_step.at if self.per_step.active else None

    def _task_params(self, tasks: int, *, detach: bool = False) -> Params:
        """theta_0 of ``tasks`` tasks: adapting tensors expanded to ``[tasks, ...]`` (a view)."""
        params = self.model_params()
        if detach:
            params = {n: p.detach() for n, p in params.items()}
        return {
            n: (p.expand(tasks, *p.shape) if n in self._per_task else p) for n, p in params.items()
        }

    def _adapt(
        self,
        params: Params,
        x: Tensor,
        y: Tensor,
        steps: int,
        first_order: bool,
        keep: set[int] | None = None,
    ) -> list[Params | None]:
        return adapt(
            _once(self._task_forward) if first_order else self._task_forward,
            params,
            x,
            y,
            update=self.inner_update,
            steps=steps,
            first_order=first_order,
            names=self.adapt_names,
            loss_fn=self.summed_loss,
            keep=keep,
            at_step=self._step_view,
        )

    def _check(
        self,
        support_x: Tensor,
        support_y: Tensor,
        query_x: Tensor | None = None,
        query_y: Tensor | None = None,
    ) -> None:
        """The episode's shapes and dtypes, then its targets against what the model outputs
        (probed once per input shape)."""
        check_episode(support_x, support_y, query_x, query_y, task=self.task)
        shape = tuple(support_x.shape[2:])
        if self._checked_shape != shape:
            with torch.no_grad():
                try:
                    out = self._forward(self.model_params(), support_x[0])
                except RuntimeError as error:
                    raise ValueError(
                        f"the model cannot take inputs of shape {list(shape)} per example "
                        f"({type(self.model).__name__}: {str(error).splitlines()[0]}); check the "
                        "model's input size against the data"
                    ) from error
            self._checked_shape, self._output_shape = shape, tuple(out.shape[1:])
        check_targets(self.task, self._output_shape, support_y, query_y)


def _once(forward: Forward) -> Forward:
    """``forward`` for passes no second derivative follows (query passes, first-order support
    passes): the backend may then choose kernels with a faster single backward."""

    def run(params: Params, x: Tensor) -> Tensor:
        with differentiated_once():
            return forward(params, x)

    return run
