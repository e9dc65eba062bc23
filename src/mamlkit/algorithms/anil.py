"""ANIL ("almost no inner loop"): only the classifier head adapts to each task.

Raghu, Raghu, Bengio and Vinyals (ICLR 2020) found that MAML's inner loop mostly re-uses features;
ANIL freezes the body in the inner loop (it is still meta-learned) and adapts the head alone. A
parameter filter (``adapt=("head.*",)``), not a special case: every mamlkit model names its
classifier ``head``. Raghu et al. build on MAML's setup, whose protocol comparisons use for it.
"""

from __future__ import annotations

from mamlkit.algorithms.spec import AlgorithmSpec, register_algorithm

RAGHU_2020 = (
    "Raghu, Raghu, Bengio, Vinyals. Rapid Learning or Feature Reuse? Towards Understanding the "
    "Effectiveness of MAML. ICLR 2020."
)

SPEC = register_algorithm(AlgorithmSpec("anil", adapt=("head.*",), reference=RAGHU_2020))
