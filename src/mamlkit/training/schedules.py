"""The outer learning-rate schedule, built the same way for every entry point.

``mamlkit train`` (:func:`mamlkit.training.build.make_scheduler`) and :func:`mamlkit.train_maml`
both build it here, so an algorithm gets the same learning rate at every iteration whichever way
it is trained (MAML++'s cosine annealing included).
"""

from __future__ import annotations

import math

import torch

from mamlkit.algorithms import OUTER_LR_SCHEDULES, AlgorithmSpec

#: The floor of the cosine schedule unless told otherwise (Antoniou et al.'s min_learning_rate).
DEFAULT_OUTER_LR_MIN = 1e-5


def chosen_schedule(algorithm: AlgorithmSpec, schedule: str | None = None) -> str:
    """``schedule`` if given, else the algorithm's own (cosine for the MAML++ presets).

    >>> from mamlkit.algorithms import resolve_algorithm
    >>> from mamlkit.training.schedules import chosen_schedule
    >>> chosen_schedule(resolve_algorithm("mamlpp")), chosen_schedule(resolve_algorithm("maml"))
    ('cosine', 'constant')
    >>> chosen_schedule(resolve_algorithm("maml"), "cosine")
    'cosine'
    """
    chosen = algorithm.outer_lr_schedule if schedule is None else schedule
    if chosen not in OUTER_LR_SCHEDULES:
        raise ValueError(
            f"outer_lr_schedule must be one of {', '.join(OUTER_LR_SCHEDULES)}, got {chosen!r}"
        )
    return chosen


def outer_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    iterations: int | None,
    lr_min: float = DEFAULT_OUTER_LR_MIN,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The scheduler of ``schedule``: ``None`` for ``constant``; for ``cosine``, annealing from
    the optimiser's learning rate to ``lr_min`` over ``iterations`` steps.

    A cosine schedule must know the run's length, so ``iterations=None`` (an endless task
    stream) is a ``ValueError`` that says what to pass.

    >>> import torch
    >>> from mamlkit.training.schedules import outer_lr_scheduler
    >>> optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    >>> type(outer_lr_scheduler(optimizer, "cosine", iterations=100)).__name__
    'CosineAnnealingLR'
    >>> outer_lr_scheduler(optimizer, "cosine", iterations=None)
    Traceback (most recent call last):
        ...
    ValueError: the cosine outer learning-rate schedule anneals over the run's iterations, and
    the task loader is endless: pass iterations=N (or outer_lr_schedule='constant')
    """
    if schedule not in OUTER_LR_SCHEDULES:
        raise ValueError(
            f"outer_lr_schedule must be one of {', '.join(OUTER_LR_SCHEDULES)}, got {schedule!r}"
        )
    if schedule == "constant":
        return None
    if iterations is None:
        raise ValueError(
            "the cosine outer learning-rate schedule anneals over the run's iterations, and the "
            "task loader is endless: pass iterations=N (or outer_lr_schedule='constant')"
        )
    if isinstance(lr_min, bool) or not (0 <= lr_min < math.inf):
        raise ValueError(f"outer_lr_min must be a finite number >= 0, got {lr_min!r}")
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations, eta_min=lr_min)


__all__ = ["DEFAULT_OUTER_LR_MIN", "chosen_schedule", "outer_lr_scheduler"]
