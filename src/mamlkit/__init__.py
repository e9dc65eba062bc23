"""mamlkit: gradient-based meta-learning (MAML, FOMAML, MAML++, ANIL, Meta-SGD, Reptile) from one
functional core.

>>> import mamlkit
>>> sorted(mamlkit.ALGORITHMS)
['anil', 'fomaml', 'fomamlpp', 'maml', 'mamlpp', 'metasgd', 'reptile']
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
from mamlkit.training import EvalResult, RegressionEvalResult, evaluate, fit, train_maml

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
    "RegressionEvalResult",
    "TaskScores",
    "__version__",
    "evaluate",
    "fit",
    "register_algorithm",
    "train_maml",
]
