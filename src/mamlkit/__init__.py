"""mamlkit: gradient-based meta-learning (MAML, FOMAML, MAML++) from one functional core.

>>> import mamlkit
>>> sorted(mamlkit.ALGORITHMS)
['fomaml', 'fomamlpp', 'maml', 'mamlpp']
"""

from mamlkit.core import (
    ALGORITHMS,
    MAML,
    AdaptedTasks,
    AlgorithmSpec,
    MetaLearner,
    TaskScores,
    register_algorithm,
)
from mamlkit.models import MODELS, Conv4
from mamlkit.training import EvalResult, evaluate, fit, train_maml

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "MAML",
    "MODELS",
    "AdaptedTasks",
    "AlgorithmSpec",
    "Conv4",
    "EvalResult",
    "MetaLearner",
    "TaskScores",
    "__version__",
    "evaluate",
    "fit",
    "register_algorithm",
    "train_maml",
]
