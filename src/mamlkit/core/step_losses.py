"""How much each inner step's query loss counts in the meta-loss: the plain choice.

MAML uses only the query loss after the last inner step: weights ``[0, ..., 0, 1]``. Other
weightings are the business of the algorithm that introduces them (MAML++'s annealed multi-step
loss lives in :mod:`mamlkit.algorithms.mamlpp`); :func:`~mamlkit.core.weighted_query_loss`
takes any weights.
"""

from __future__ import annotations

import torch

from mamlkit.checks import positive_int


def last_step_weights(steps: int) -> torch.Tensor:
    """Weights ``[0, ..., 0, 1]``: only the query loss after the final inner step counts (MAML).

    >>> from mamlkit.core import last_step_weights
    >>> last_step_weights(3)
    tensor([0., 0., 1.], dtype=torch.float64)
    """
    positive_int("inner steps", steps)
    weights = torch.zeros(steps, dtype=torch.float64)
    weights[-1] = 1.0
    return weights
