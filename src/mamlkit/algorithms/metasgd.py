"""Meta-SGD: a learned inner learning rate for every element of every weight.

Li, Zhou, Chen and Li (2017). The rate tensor has the weights' shape and is meta-learned with them
(:class:`mamlkit.core.update_rules.PerElementLR`); here it starts at the run's inner learning
rate everywhere, so Meta-SGD starts from exactly MAML's update. Li et al.'s Omniglot
hyperparameters were not found in the sources searched, so comparisons run it with MAML's
protocol.
"""

from __future__ import annotations

from mamlkit.algorithms.spec import AlgorithmSpec, register_algorithm

LI_2017 = "Li, Zhou, Chen, Li. Meta-SGD: Learning to Learn Quickly for Few-Shot Learning. 2017."

SPEC = register_algorithm(AlgorithmSpec("metasgd", update_rule="per_element", reference=LI_2017))
