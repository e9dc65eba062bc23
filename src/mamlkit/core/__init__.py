"""The functional core: the one inner loop every algorithm is built from, and its small parts.

Pure functions over parameter dicts (:func:`adapt`, :func:`weighted_query_loss`), the inner
update rules (:data:`UPDATE_RULES`), the plain step weighting and the per-step tensor tables.
Nothing here knows an algorithm by name; :mod:`mamlkit.algorithms` composes these pieces.
"""

from mamlkit.core.inner_loop import adapt, functional_forward, inner_gradients, weighted_query_loss
from mamlkit.core.per_step import PerStepTables
from mamlkit.core.step_losses import last_step_weights
from mamlkit.core.update_rules import UPDATE_RULES, InnerUpdate, make_update_rule

__all__ = [
    "UPDATE_RULES",
    "InnerUpdate",
    "PerStepTables",
    "adapt",
    "functional_forward",
    "inner_gradients",
    "last_step_weights",
    "make_update_rule",
    "weighted_query_loss",
]
