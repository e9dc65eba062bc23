"""How many tasks' parameters travel together: per-task tensors carry a leading task dimension.

Adapted weights of ``B`` tasks are one dict: a tensor that adapts is ``[B, *shape]``, one that does
not (or a buffer) is the model's own ``shape``, shared by all tasks. Every backend and the learner
read that layout through these two functions.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from mamlkit.vocabulary import Params


def per_task_names(params: Params, param_ndim: dict[str, int]) -> set[str]:
    """The names in ``params`` that carry a leading task dimension (one more dim than the
    model's parameter of that name); the others (and buffers, e.g. per-step BatchNorm running
    statistics) are shared by all tasks.

    >>> import torch
    >>> from mamlkit.backends import per_task_names
    >>> per_task_names({"w": torch.zeros(4, 3, 2), "b": torch.zeros(3)}, {"w": 2, "b": 1})
    {'w'}
    """
    return {n for n, v in params.items() if n in param_ndim and v.dim() == param_ndim[n] + 1}


def task_slice(params: Params, per_task: AbstractSet[str], index: int | slice) -> Params:
    """The parameters of task ``index`` (an int) or of a range of tasks (a slice).

    Tensors named in ``per_task`` have a leading task dimension and are indexed; the others are
    shared by all tasks and returned as they are.

    >>> import torch
    >>> from mamlkit.backends import task_slice
    >>> params = {"w": torch.zeros(4, 3, 2), "b": torch.zeros(3)}  # w per task, b shared
    >>> {name: tuple(t.shape) for name, t in task_slice(params, {"w"}, 0).items()}
    {'w': (3, 2), 'b': (3,)}
    """
    return {n: (v[index] if n in per_task else v) for n, v in params.items()}
