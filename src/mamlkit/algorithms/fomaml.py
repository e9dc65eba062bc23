"""First-order MAML: MAML with the inner gradients taken as constants (no second derivatives).

Finn, Abbeel and Levine (ICML 2017), section 5.2. The meta-gradient is the query-loss gradient at
the adapted weights; no graph is kept through the inner loop, so it is the cheapest way to train
MAML's objective. It follows MAML's published protocol (:mod:`mamlkit.algorithms.maml`).
"""

from __future__ import annotations

from mamlkit.algorithms.maml import FINN_2017
from mamlkit.algorithms.spec import AlgorithmSpec, register_algorithm

SPEC = register_algorithm(
    AlgorithmSpec("fomaml", first_order=True, reference=FINN_2017 + " Section 5.2")
)
