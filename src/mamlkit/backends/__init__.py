"""Execution backends: how one model is evaluated for a batch of tasks with per-task weights.

The fast path, kept apart from the maths in :mod:`mamlkit.core`. Every backend is a *task
forward* ``forward(params, x) -> outputs``: ``x`` is ``[B, n, ...]`` (``B`` tasks of ``n``
examples) and ``params`` maps parameter names to per-task tensors ``[B, *shape]`` or to shared
ones (``shape``). The inner loop and the algorithms never know which backend runs; all of them
give the same values and gradients (to float rounding), which the backend tests check against
finite differences and a hand-unrolled reference.

* ``loop`` (:class:`LoopForward`): one ``torch.func.functional_call`` per task. The reference;
  runs any model.
* ``batched`` (:class:`BatchedForward`): all tasks in one traced program (:mod:`.program`) with
  faster CPU kernels (:mod:`.kernels`). Needs a model built from the layers that program supports
  (Conv4, MLPs, residual conv nets).
* ``auto`` (default): ``batched`` where the model supports it, else ``loop``. Before the first
  batched use for an input shape it checks the batched outputs against ``loop`` on two tasks and
  falls back (with a warning) if they differ.

How many tasks go through one call (the memory policy) is :class:`ChunkPolicy`'s business.

>>> import torch
>>> from mamlkit.backends import make_task_forward
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

from typing import Protocol

from torch import Tensor, nn

from mamlkit.backends.batched import BatchedForward
from mamlkit.backends.chunking import (
    SUPPORT_EXAMPLES,
    TASKS_PER_BACKWARD,
    ChunkPolicy,
    auto_query_chunk,
    auto_support_chunk,
    auto_tasks_per_backward,
    join_trajectories,
)
from mamlkit.backends.kernels import differentiated_once
from mamlkit.backends.layout import per_task_names, task_slice
from mamlkit.backends.loop import LoopForward
from mamlkit.backends.losses import task_losses
from mamlkit.backends.program import NotBatchable, TaskBatchedProgram
from mamlkit.vocabulary import Params

#: The names ``MetaLearner(execution=...)`` and ``--execution`` accept (see the module docstring).
EXECUTIONS = ("auto", "loop", "batched")


class TaskForward(Protocol):
    """``forward(params, x)``: outputs ``[B, n, ...]`` of ``B`` tasks, each with its own weights;
    ``name`` is the strategy running now (``"batched"`` or ``"loop"``), and the memory policy
    says which tasks go through one call."""

    name: str

    def __call__(self, params: Params, x: Tensor) -> Tensor: ...

    def support_groups(self, support_x: Tensor, *, first_order: bool) -> list[slice]:
        """The groups of tasks adapted together."""
        ...

    def query_groups(self, query_x: Tensor) -> list[slice]:
        """The groups of tasks whose query sets are scored together."""
        ...


def make_task_forward(
    model: nn.Module, execution: str = "auto", chunks: ChunkPolicy | None = None
) -> LoopForward | BatchedForward:
    """The task forward for ``execution`` (one of :data:`EXECUTIONS`), grouping tasks as
    ``chunks`` says (default: :class:`ChunkPolicy`'s automatic sizes).

    ``auto`` gives a :class:`BatchedForward` when the model can be traced, else a
    :class:`LoopForward` whose ``fallback_reason`` says why not; ``batched`` raises
    :class:`NotBatchable` instead of falling back. See the module docstring for an example.
    """
    if execution not in EXECUTIONS:
        raise ValueError(f"execution {execution!r}: choose one of {', '.join(EXECUTIONS)}")
    if execution == "loop":
        return LoopForward(model, chunks=chunks)
    try:
        return BatchedForward(model, strict=execution == "batched", chunks=chunks)
    except NotBatchable as error:
        if execution == "batched":
            raise NotBatchable(f"execution='batched' cannot run this model: {error}") from error
        return LoopForward(model, fallback_reason=str(error), chunks=chunks)


__all__ = [
    "EXECUTIONS",
    "SUPPORT_EXAMPLES",
    "TASKS_PER_BACKWARD",
    "BatchedForward",
    "ChunkPolicy",
    "LoopForward",
    "NotBatchable",
    "TaskBatchedProgram",
    "TaskForward",
    "auto_query_chunk",
    "auto_support_chunk",
    "auto_tasks_per_backward",
    "differentiated_once",
    "join_trajectories",
    "make_task_forward",
    "per_task_names",
    "task_losses",
    "task_slice",
]
