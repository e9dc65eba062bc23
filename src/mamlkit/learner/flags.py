"""``MAML(model, first_order=..., plus_plus=...)``: MAML, FOMAML or MAML++ chosen by two flags.

For code that thinks of the three as one algorithm with switches; everything else names the
algorithm (``MetaLearner(model, "fomaml")``).
"""

from __future__ import annotations

from torch import nn

from mamlkit.learner.meta_learner import DEFAULT_INNER_LR, DEFAULT_INNER_STEPS, MetaLearner

#: The preset each (first_order, plus_plus) pair stands for.
PRESET_BY_FLAGS = {
    (False, False): "maml",
    (True, False): "fomaml",
    (False, True): "mamlpp",
    (True, True): "fomamlpp",
}


class MAML(MetaLearner):
    """A :class:`~mamlkit.MetaLearner` whose algorithm is picked by ``first_order`` and
    ``plus_plus``.

    ``MAML(model)`` is MAML (Finn 2017); ``first_order=True`` FOMAML; ``plus_plus=True`` MAML++
    (the ``mamlpp`` preset: multi-step loss, per-layer per-step learned LRs, per-step BatchNorm
    weights, derivative-order annealing, off unless ``first_order_iterations`` is given, and the
    cosine meta LR that :func:`~mamlkit.train_maml` and ``mamlkit train`` apply); both flags:
    first-order MAML++. The defaults are :class:`~mamlkit.MetaLearner`'s.

    >>> import torch, mamlkit
    >>> learner = mamlkit.MAML(torch.nn.Linear(4, 3), inner_lr=0.1, inner_steps=2, plus_plus=True)
    >>> learner.algorithm.name
    'mamlpp'
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = DEFAULT_INNER_LR,
        inner_steps: int = DEFAULT_INNER_STEPS,
        first_order: bool = False,
        plus_plus: bool = False,
        **settings: object,
    ) -> None:
        for flag, value in (("first_order", first_order), ("plus_plus", plus_plus)):
            if not isinstance(value, bool):
                raise ValueError(f"{flag} must be True or False, got {value!r}")
        preset = PRESET_BY_FLAGS[(first_order, plus_plus)]
        super().__init__(model, preset, inner_lr=inner_lr, inner_steps=inner_steps, **settings)  # type: ignore[arg-type]
