"""The functional meta-learning core: inner loop, update rules, step weights, algorithm presets."""

from mamlkit.core.algorithms import ALGORITHMS, AlgorithmSpec, register_algorithm, resolve_algorithm
from mamlkit.core.inner_loop import adapt, functional_forward, inner_gradients, weighted_query_loss
from mamlkit.core.learner import MAML, AdaptedTasks, MetaLearner, TaskScores, check_episode
from mamlkit.core.step_weights import last_step_weights, msl_weights
from mamlkit.core.update_rules import InnerUpdate, make_update_rule

__all__ = [
    "ALGORITHMS",
    "MAML",
    "AdaptedTasks",
    "AlgorithmSpec",
    "InnerUpdate",
    "MetaLearner",
    "TaskScores",
    "adapt",
    "check_episode",
    "functional_forward",
    "inner_gradients",
    "last_step_weights",
    "make_update_rule",
    "msl_weights",
    "register_algorithm",
    "resolve_algorithm",
    "weighted_query_loss",
]
