"""Episodes: the meta-batches of few-shot tasks that every layer passes around, and their checks.

An episode holds ``B`` tasks side by side: support inputs ``[B, n_support, ...]`` with their
targets and query inputs ``[B, n_query, ...]`` with theirs. Samplers produce them, the learner
adapts to and scores them; :func:`check_episode` is what turns a wrong shape or dtype into a
message that says what to change, before any forward pass.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from mamlkit.vocabulary import TaskKind


class Episode(NamedTuple):
    """One meta-batch of ``B`` tasks; labels are 0..N-1 within each task.

    A tuple ``(support_x, support_y, query_x, query_y)``, so it unpacks straight into
    :meth:`mamlkit.MetaLearner.meta_loss` (``learner.meta_loss(*episode)``). The shapes noted
    are those of an image classification episode; regression episodes (the sinusoid) hold float
    targets ``[B, K, 1]`` instead.
    """

    support_x: Tensor  # [B, N*K, C, H, W] float32
    support_y: Tensor  # [B, N*K] int64
    query_x: Tensor  # [B, N*Q, C, H, W] float32
    query_y: Tensor  # [B, N*Q] int64

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Episode:
        """The same episode with every tensor moved to ``device``."""
        return Episode(*(t.to(device, non_blocking=non_blocking) for t in self))


def check_episode(
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor | None = None,
    query_y: Tensor | None = None,
    *,
    task: TaskKind | str = TaskKind.CLASSIFICATION,
) -> None:
    """Validate task-batched episodes: inputs ``[B, n, ...]`` and targets: int64 labels
    ``[B, n]`` for classification, float targets ``[B, n, ...]`` for regression.

    Every :class:`MetaLearner` method that takes an episode calls it first, so a wrong shape or
    dtype fails with a message that says what to change, not deep inside a forward pass. Support
    and query must agree on the number of tasks and the per-example input shape.

    >>> import torch
    >>> from mamlkit.episodes import check_episode
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
        if task == TaskKind.REGRESSION:
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


def check_targets(
    task: TaskKind | str,
    output_shape: tuple[int, ...],
    support_y: Tensor,
    query_y: Tensor | None = None,
) -> None:
    """Check an episode's targets against what the model outputs per example (``output_shape``):
    class labels below the number of outputs, or regression targets of the outputs' shape.

    >>> import torch
    >>> from mamlkit.episodes import check_targets
    >>> check_targets("classification", (3,), torch.tensor([[0, 1, 2]]))
    >>> check_targets("classification", (2,), torch.tensor([[0, 1]]), torch.tensor([[2, 0]]))
    Traceback (most recent call last):
        ...
    ValueError: query_y: label 2 is out of range: the model predicts 2 classes, so labels must be
    0..1 (relabel each task's classes 0..N-1)
    """
    targets = [("support_y", support_y)] + ([("query_y", query_y)] if query_y is not None else [])
    if task == TaskKind.REGRESSION:
        for _, y in targets:
            if tuple(y.shape[2:]) != output_shape:
                raise ValueError(
                    f"regression targets have shape {list(y.shape[2:])} per example but the "
                    f"model outputs {list(output_shape)}; build the model with as many "
                    "outputs as the targets have"
                )
        return
    classes = output_shape[-1]
    for kind, y in targets:
        top = int(y.max())
        if top >= classes:
            raise ValueError(
                f"{kind}: label {top} is out of range: the model predicts {classes} classes, so "
                f"labels must be 0..{classes - 1} (relabel each task's classes 0..N-1)"
            )


def episode_tensors(batch: Any, device: torch.device | None = None) -> tuple[Tensor, ...]:
    """The four tensors ``(support_x, support_y, query_x, query_y)`` of a batch from a task
    loader (an :class:`Episode` or any 4-sequence of tensors), moved to ``device`` if given.

    >>> import torch
    >>> from mamlkit.episodes import episode_tensors
    >>> len(episode_tensors([torch.zeros(1, 2, 3), torch.zeros(1, 2), torch.zeros(1, 2, 3),
    ...                      torch.zeros(1, 2)]))
    4
    >>> episode_tensors("not an episode")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    TypeError: each batch of the task loader must be (support_x, ..., query_y) tensors, got str
    """
    try:
        tensors = tuple(batch)
    except TypeError:
        tensors = ()
    if len(tensors) != 4 or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError(
            "each batch of the task loader must be (support_x, support_y, query_x, query_y) "
            f"tensors, got {type(batch).__name__}"
        )
    if device is not None:
        tensors = tuple(t.to(device, non_blocking=True) for t in tensors)
    return tensors
