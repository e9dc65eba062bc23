"""BOIL ("body only update in inner loop"): the body adapts to each task, the head does not.

Oh, Yoo, Kim and Yun (ICLR 2021) argue that MAML's head-dominated inner loop re-uses features,
and that freezing the head in the inner loop forces the body's representation to change with the
task. The opposite filter of ANIL: every parameter but the classifier head adapts
(``adapt=("*", "!head.*")``); the head is meta-learned only. The paper's learning rate of 0 for
the head in the inner loop is exactly "does not adapt". The paper reports no Omniglot results,
so comparisons run it with MAML's protocol.
"""

from __future__ import annotations

from mamlkit.algorithms.spec import AlgorithmSpec, register_algorithm

OH_2021 = "Oh, Yoo, Kim, Yun. BOIL: Towards Representation Change for Few-shot Learning. ICLR 2021."

SPEC = register_algorithm(AlgorithmSpec("boil", adapt=("*", "!head.*"), reference=OH_2021))
