"""Memory policy: how many tasks go through one batched call.

A second-order meta-gradient keeps a task's graph until its backward, so the tasks of one
backward are adapted at once. A first-order step keeps no graph, so on CPU tasks are adapted a
few at a time (about :data:`SUPPORT_EXAMPLES` support examples per call) and the trajectories
joined; large query sets are scored task by task, where one task's activations fit the caches.
On CPU a meta-batch is backpropagated a few tasks at a time (:data:`TASKS_PER_BACKWARD`), which
costs little time and bounds the memory of every pass; a model running task by task (the
``loop`` strategy) gains nothing from groups and backpropagates one task at a time. On CUDA all
tasks go together.
``MetaLearner(query_chunk=..., support_chunk=..., tasks_per_backward=...)`` overrides the sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mamlkit.checks import positive_int
from mamlkit.vocabulary import Params

#: Support examples per batched first-order call on CPU (``MetaLearner(support_chunk=...)``
#: overrides the resulting number of tasks).
SUPPORT_EXAMPLES = 160

#: Tasks per backward of a batched meta-batch on CPU (``MetaLearner(tasks_per_backward=...)``
#: overrides it). Measured on Conv4 at the MAML paper's meta-batch of 32 tasks
#: (``docs/performance.md``): 8 tasks per backward runs at 0.98x-0.99x the speed of all 32 in one
#: backward and holds about a third of the memory; fewer tasks per call lose speed.
TASKS_PER_BACKWARD = 8


def auto_query_chunk(tasks: int, examples: int, device: torch.device) -> int:
    """How many tasks' query sets to evaluate in one batched call.

    On CUDA all of them. On CPU, per-task calls when query sets are large (>= 32 examples: the
    activations of one task then fill the caches, and one task alone takes the channels-last
    fast path), all tasks at once when they are small (measured: ``docs/performance.md``).

    >>> import torch
    >>> from mamlkit.backends import auto_query_chunk
    >>> auto_query_chunk(32, 75, torch.device("cpu")), auto_query_chunk(32, 5, torch.device("cpu"))
    (1, 32)
    """
    if device.type != "cpu" or examples < 32:
        return tasks
    return 1


def auto_support_chunk(tasks: int, examples: int, device: torch.device) -> int:
    """How many tasks a first-order run adapts together: on CPU about 160 support examples per
    call (all tasks on CUDA), so a large support set does not hold every task's activations.

    >>> import torch
    >>> from mamlkit.backends import auto_support_chunk
    >>> cpu = torch.device("cpu")
    >>> auto_support_chunk(32, 5, cpu), auto_support_chunk(32, 25, cpu)  # 160 // 25 = 6 tasks
    (32, 6)
    """
    if device.type != "cpu":
        return tasks
    return max(1, min(tasks, SUPPORT_EXAMPLES // max(examples, 1)))


def auto_tasks_per_backward(tasks: int, *, strategy: str, device: torch.device) -> int:
    """How many tasks ``MetaLearner.meta_backward`` adapts, scores and backpropagates before the
    next group starts, when neither it nor the learner is told: on CPU :data:`TASKS_PER_BACKWARD`
    for the batched strategy and one for the ``loop`` strategy (tasks run one by one there, so a
    group would only hold more graphs), all tasks on CUDA.

    >>> import torch
    >>> from mamlkit.backends import auto_tasks_per_backward
    >>> cpu = torch.device("cpu")
    >>> auto_tasks_per_backward(32, strategy="batched", device=cpu)
    8
    >>> auto_tasks_per_backward(32, strategy="loop", device=cpu)
    1
    """
    if device.type != "cpu":
        return tasks
    if strategy == "loop":
        return 1
    return min(tasks, TASKS_PER_BACKWARD)


def _slices(tasks: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, tasks, size)]


class ChunkPolicy:
    """The task groups of the support pass and of the query pass of a meta-batch.

    Args:
        query_chunk: tasks scored per query call; ``None``: :func:`auto_query_chunk`.
        support_chunk: tasks adapted per first-order call; ``None``: :func:`auto_support_chunk`.

    Every task forward holds one and answers with it (``forward.support_groups(...)``,
    ``forward.query_groups(...)``). The ``loop`` strategy runs task by task anyway: its support
    pass is one group and its query sets are scored one task per group (so a backward that
    follows at once frees each task's query activations before the next).

    >>> import torch
    >>> from mamlkit.backends import ChunkPolicy
    >>> x = torch.zeros(32, 25, 1, 28, 28)  # 32 tasks of 25 support examples
    >>> len(ChunkPolicy().support_slices(x, first_order=True, strategy="batched"))  # 6 tasks each
    6
    >>> ChunkPolicy().support_slices(x, first_order=False, strategy="batched")
    [slice(0, 32, None)]
    """

    def __init__(self, query_chunk: int | None = None, support_chunk: int | None = None) -> None:
        self.query_chunk = None if query_chunk is None else positive_int("query_chunk", query_chunk)
        self.support_chunk = (
            None if support_chunk is None else positive_int("support_chunk", support_chunk)
        )

    def support_slices(
        self, support_x: torch.Tensor, *, first_order: bool, strategy: str
    ) -> list[slice]:
        """Groups of tasks adapted together: all of them unless first order (which keeps no
        graph, so groups bound the memory of the support pass)."""
        tasks = support_x.shape[0]
        size = tasks
        if first_order:
            size = self.support_chunk or auto_support_chunk(
                tasks, support_x.shape[1], support_x.device
            )
        if size >= tasks or strategy == "loop":
            return [slice(0, tasks)]
        return _slices(tasks, size)

    def query_slices(self, query_x: torch.Tensor, *, strategy: str) -> list[slice]:
        """Groups of tasks whose query sets are scored together."""
        tasks = query_x.shape[0]
        if strategy == "loop":
            return _slices(tasks, 1)
        size = self.query_chunk or auto_query_chunk(tasks, query_x.shape[1], query_x.device)
        return _slices(tasks, size)


def join_trajectories(
    parts: Sequence[list[Params | None]], per_task: frozenset[str]
) -> list[Params | None]:
    """One trajectory from the trajectories of consecutive task groups: per-task tensors are
    concatenated along the task dimension, shared ones taken once; a step dropped (``None``) in
    the groups stays dropped.

    >>> import torch
    >>> from mamlkit.backends import join_trajectories
    >>> a = [{"w": torch.zeros(2, 3), "b": torch.ones(3)}]
    >>> b = [{"w": torch.zeros(1, 3), "b": torch.ones(3)}]
    >>> {n: tuple(t.shape) for n, t in join_trajectories([a, b], frozenset({"w"}))[0].items()}
    {'w': (3, 3), 'b': (3,)}
    """
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return [
        None
        if first[k] is None
        else {
            n: (torch.cat([part[k][n] for part in parts]) if n in per_task else v)  # type: ignore[index]
            for n, v in first[k].items()  # type: ignore[union-attr]
        }
        for k in range(len(first))
    ]
