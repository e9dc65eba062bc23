"""mamlkit: gradient-based meta-learning (MAML, FOMAML, MAML++, ANIL, BOIL, Meta-SGD, Reptile)
from one functional core.

>>> import mamlkit
>>> sorted(mamlkit.ALGORITHMS)
['anil', 'boil', 'fomaml', 'fomamlpp', 'maml', 'mamlpp', 'metasgd', 'reptile']
"""

from mamlkit.algorithms import ALGORITHMS, AlgorithmSpec, register_algorithm
from mamlkit.learner import MAML, AdaptedTasks, MetaLearner, TaskScores
from mamlkit.models import MODELS, Conv4
from mamlkit.training import Callback, EvalResult, evaluate, fit, train_maml

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "MAML",
    "MODELS",
    "AdaptedTasks",
    "AlgorithmSpec",
    "Callback",
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
