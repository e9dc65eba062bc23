"""Execution strategies: how one model is evaluated for a batch of tasks with per-task weights.

Every strategy is a *task forward* ``forward(params, x) -> outputs``: ``x`` is ``[B, n, ...]``
(``B`` tasks of ``n`` examples) and ``params`` maps parameter names to per-task tensors
``[B, *shape]`` or to shared ones (``shape``). The inner loop and the algorithms never know which
strategy runs; all of them give the same values and gradients (to float rounding), which
``tests/test_execution.py`` checks against finite differences and a hand-unrolled reference.

* ``loop``: one ``torch.func.functional_call`` per task. The reference; runs any model.
* ``batched``: all tasks in one traced program (:mod:`.batched`) with faster CPU kernels
  (:mod:`.kernels`). Needs a model built from the layers that program supports (Conv4, MLPs,
  residual conv nets).
* ``auto`` (default): ``batched`` where the model supports it, else ``loop``. Before the first
  batched use for an input shape it checks the batched outputs against ``loop`` on two tasks and
  falls back (with a warning) if they differ.

>>> import torch
>>> from mamlkit.core.execution import make_task_forward
>>> from mamlkit.models import MLP
>>> model = MLP(in_channels=4, num_classes=3, hidden=8)
>>> params = {name: p.expand(2, *p.shape) for name, p in model.named_parameters()}  # 2 tasks
>>> x = torch.randn(2, 5, 4)
>>> loop, batched = make_task_forward(model, "loop"), make_task_forward(model, "batched")
>>> loop(params, x).shape
torch.Size([2, 5, 3])
>>> torch.allclose(loop(params, x), batched(params, x), atol=1e-6)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Set as AbstractSet
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mamlkit.core.execution.batched import NotBatchable, TaskBatchedProgram, per_task_names

Params = dict[str, Tensor]

#: The names ``MetaLearner(execution=...)`` accepts (see the module docstring).
STRATEGIES = ("auto", "loop", "batched")


class TaskForward(Protocol):
    """``forward(params, x)``: outputs ``[B, n, ...]`` of ``B`` tasks, each with its own weights."""

    def __call__(self, params: Params, x: Tensor) -> Tensor: ...


def task_slice(params: Params, per_task: AbstractSet[str], index: int | slice) -> Params:
    """The parameters of task ``index`` (an int) or of a range of tasks (a slice).

    Tensors named in ``per_task`` have a leading task dimension and are indexed; the others are
    shared by all tasks and returned as they are.

    >>> import torch
    >>> from mamlkit.core.execution import task_slice
    >>> params = {"w": torch.zeros(4, 3, 2), "b": torch.zeros(3)}  # w per task, b shared
    >>> {name: tuple(t.shape) for name, t in task_slice(params, {"w"}, 0).items()}
    {'w': (3, 2), 'b': (3,)}
    """
    return {n: (v[index] if n in per_task else v) for n, v in params.items()}


class LoopForward:
    """The reference strategy: the model run once per task through ``functional_call``.

    Runs any model (one forward per task, with that task's parameters and the model's buffers);
    ``auto`` falls back to it when the batched program refuses a model.
    """

    name = "loop"

    def __init__(self, model: nn.Module, fallback_reason: str | None = None) -> None:
        self.model = model
        #: Why ``auto`` chose this strategy (the batched program's refusal), if it did.
        self.fallback_reason = fallback_reason
        self.param_ndim = {name: p.dim() for name, p in model.named_parameters()}

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        buffers = dict(self.model.named_buffers())
        per_task = per_task_names(params, self.param_ndim)
        outputs = [
            functional_call(self.model, {**buffers, **task_slice(params, per_task, b)}, (x[b],))
            for b in range(x.shape[0])
        ]
        return torch.stack(outputs)


class BatchedForward:
    """All tasks in one :class:`TaskBatchedProgram`; falls back to ``loop`` where it must.

    ``strict=True`` (strategy ``batched``) turns every fallback into an error naming the reason.
    Before the first batched call for an input shape, dtype and device it compares the program's
    outputs with :class:`LoopForward`'s on two tasks; a mismatch switches it to ``loop`` for good
    (with a warning unless strict). Raises :class:`NotBatchable` when the model cannot be traced.
    """

    def __init__(self, model: nn.Module, *, strict: bool) -> None:
        self.program = TaskBatchedProgram(model)
        self.loop = LoopForward(model)
        self.strict = strict
        self.verified: set[tuple[object, ...]] = set()
        self.disabled: str | None = None

    @property
    def name(self) -> str:
        """``"loop"`` while the model runs task by task (after a fallback, or in a mode the
        program cannot run, e.g. BatchNorm updating running statistics in training)."""
        return "loop" if self.disabled or self.program.unsupported_state() else "batched"

    def __call__(self, params: Params, x: Tensor) -> Tensor:
        reason = self.disabled or self.program.unsupported_state()
        if reason is None:
            key = (tuple(x.shape[2:]), x.dtype, x.device.type)
            if key not in self.verified:
                reason = self._verify(params, x)
                if reason is None:
                    self.verified.add(key)
                else:
                    self.disabled = reason
        if reason is None:
            return self.program(params, x)
        if self.strict:
            raise NotBatchable(f"execution='batched' cannot run this model: {reason}")
        return self.loop(params, x)

    def _verify(self, params: Params, x: Tensor) -> str | None:
        """Compare batched with loop outputs on (at most) two tasks, without gradients."""
        take = min(2, x.shape[0])
        per_task = per_task_names(params, self.loop.param_ndim)
        sample = {n: v.detach() for n, v in task_slice(params, per_task, slice(0, take)).items()}
        with torch.no_grad():
            try:
                got = self.program(sample, x[:take])
            except NotBatchable as error:
                return str(error)
            want = self.loop(sample, x[:take])
        if got.shape != want.shape:
            return f"batched outputs have shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        scale = want.abs().max().item() if want.numel() else 1.0
        tolerance = 1e-4 if want.dtype == torch.float32 else 1e-9
        if not torch.allclose(got, want, rtol=tolerance, atol=tolerance * max(scale, 1.0)):
            message = "batched outputs differ from task-by-task outputs"
            if not self.strict:
                warnings.warn(f"{message}; mamlkit runs this model task by task", stacklevel=3)
            return message
        return None


def make_task_forward(model: nn.Module, execution: str = "auto") -> LoopForward | BatchedForward:
    """The task forward for ``execution`` (one of :data:`STRATEGIES`).

    ``auto`` gives a :class:`BatchedForward` when the model can be traced, else a
    :class:`LoopForward` whose ``fallback_reason`` says why not; ``batched`` raises
    :class:`NotBatchable` instead of falling back. See the module docstring for an example.
    """
    if execution not in STRATEGIES:
        raise ValueError(f"execution {execution!r}: choose one of {', '.join(STRATEGIES)}")
    if execution == "loop":
        return LoopForward(model)
    try:
        return BatchedForward(model, strict=execution == "batched")
    except NotBatchable as error:
        if execution == "batched":
            raise NotBatchable(f"execution='batched' cannot run this model: {error}") from error
        return LoopForward(model, fallback_reason=str(error))


def task_losses(loss_fn: object, outputs: Tensor, targets: Tensor) -> Tensor:
    """``[B]``: ``loss_fn(outputs[b], targets[b])`` for every task ``b``.

    Cross-entropy and mean squared error are computed for all tasks in one call; any other loss
    function is called once per task.

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from mamlkit.core.execution import task_losses
    >>> task_losses(F.cross_entropy, torch.zeros(2, 5, 3), torch.zeros(2, 5, dtype=torch.int64))
    tensor([1.0986, 1.0986])
    """
    tasks = outputs.shape[0]
    if loss_fn is F.cross_entropy and targets.dim() == 2:
        flat = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(0, 1), reduction="none")
        return flat.view(tasks, -1).mean(1)
    if loss_fn is F.mse_loss and outputs.shape == targets.shape:
        return F.mse_loss(outputs, targets, reduction="none").reshape(tasks, -1).mean(1)
    return torch.stack([loss_fn(outputs[b], targets[b]) for b in range(tasks)])  # type: ignore[operator]


def auto_query_chunk(tasks: int, examples: int, device: torch.device) -> int:
    """How many tasks' query sets to evaluate in one batched call.

    On CUDA all of them. On CPU, per-task calls when query sets are large (>= 32 examples: the
    activations of one task then fill the caches, and one task alone takes the channels-last
    fast path), all tasks at once when they are small (measured: ``docs/performance.md``).

    >>> import torch
    >>> from mamlkit.core.execution import auto_query_chunk
    >>> auto_query_chunk(32, 75, torch.device("cpu")), auto_query_chunk(32, 5, torch.device("cpu"))
    (1, 32)
    """
    if device.type != "cpu" or examples < 32:
        return tasks
    return 1


#: Support examples per batched first-order call on CPU (``MetaLearner(support_chunk=...)``
#: overrides the resulting number of tasks).
SUPPORT_EXAMPLES = 160


def auto_support_chunk(tasks: int, examples: int, device: torch.device) -> int:
    """How many tasks a first-order run adapts together: on CPU about 160 support examples per
    call (all tasks on CUDA), so a large support set does not hold every task's activations.

    >>> import torch
    >>> from mamlkit.core.execution import auto_support_chunk
    >>> cpu = torch.device("cpu")
    >>> auto_support_chunk(32, 5, cpu), auto_support_chunk(32, 25, cpu)  # 160 // 25 = 6 tasks
    (32, 6)
    """
    if device.type != "cpu":
        return tasks
    return max(1, min(tasks, SUPPORT_EXAMPLES // max(examples, 1)))


__all__ = [
    "STRATEGIES",
    "BatchedForward",
    "LoopForward",
    "NotBatchable",
    "TaskBatchedProgram",
    "TaskForward",
    "auto_query_chunk",
    "auto_support_chunk",
    "make_task_forward",
    "per_task_names",
    "task_losses",
    "task_slice",
]
