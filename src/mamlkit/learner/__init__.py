"""The learner: a model plus an algorithm, adapting to tasks and meta-trained by an optimiser.

:class:`MetaLearner` (adapt, meta_loss, score_tasks) is built on the functional core, the
execution backends and an algorithm's hooks; :class:`MAML` picks MAML, FOMAML or MAML++ by flags.
"""

from mamlkit.learner.flags import MAML
from mamlkit.learner.meta_learner import DEFAULT_INNER_LR, DEFAULT_INNER_STEPS, MetaLearner
from mamlkit.learner.results import AdaptedTasks, TaskScores

__all__ = [
    "DEFAULT_INNER_LR",
    "DEFAULT_INNER_STEPS",
    "MAML",
    "AdaptedTasks",
    "MetaLearner",
    "TaskScores",
]
