"""How much each inner step's query loss counts in the meta-loss.

MAML uses only the loss after the last inner step. MAML++ (Antoniou et al. 2019, section 4,
"multi-step loss optimisation") uses a weighted sum over all steps, starting uniform and annealed
toward the last step, after which it falls back to the last step alone.
"""

from __future__ import annotations

import torch

from mamlkit.checks import positive_int

MSL_MIN_FRACTION = 0.03  # MAML++: a non-final step keeps at least 0.03 / steps of weight


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


def msl_weights(steps: int, iteration: int, anneal_iterations: int) -> torch.Tensor:
    """MAML++'s multi-step-loss weights at ``iteration``.

    At iteration 0 every step weighs ``1/steps``. Each non-final weight then falls linearly to its
    floor ``0.03/steps`` at ``anneal_iterations``, while the final weight grows so the sum stays 1.
    From ``anneal_iterations`` on only the last step counts, as in the paper's code (where the
    schedule is expressed in epochs of 500 iterations).

    >>> from mamlkit.core import msl_weights
    >>> msl_weights(3, iteration=0, anneal_iterations=100)
    tensor([0.3333, 0.3333, 0.3333], dtype=torch.float64)
    >>> msl_weights(3, iteration=50, anneal_iterations=100)
    tensor([0.1667, 0.1667, 0.6667], dtype=torch.float64)
    >>> msl_weights(3, iteration=100, anneal_iterations=100)
    tensor([0., 0., 1.], dtype=torch.float64)
    """
    positive_int("inner steps", steps)
    if anneal_iterations < 0 or iteration < 0:
        raise ValueError(
            f"iteration ({iteration}) and anneal_iterations ({anneal_iterations}) must be >= 0"
        )
    if iteration >= anneal_iterations:
        return last_step_weights(steps)
    progress = iteration / anneal_iterations
    floor = MSL_MIN_FRACTION / steps
    weights = torch.full((steps,), max(1.0 / steps - progress / steps, floor), dtype=torch.float64)
    weights[-1] = min(1.0 / steps + progress * (steps - 1) / steps, 1.0 - (steps - 1) * floor)
    return weights
