"""mamlkit: gradient-based meta-learning (MAML, FOMAML, MAML++, ANIL, BOIL, Meta-SGD, Reptile)
from one functional core.

>>> import mamlkit
>>> sorted(mamlkit.ALGORITHMS)
['anil', 'boil', 'fomaml', 'fomamlpp', 'maml', 'mamlpp', 'metasgd', 'reptile']
"""

from importlib import metadata as _metadata

from mamlkit.algorithms import ALGORITHMS, AlgorithmSpec, register_algorithm
from mamlkit.learner import MAML, AdaptedTasks, MetaLearner, TaskScores
from mamlkit.models import MODELS, Conv4
from mamlkit.training import Callback, EvalResult, Predictions, evaluate, fit, predict, train_maml

try:  # the version lives in pyproject.toml alone; the installed metadata carries it
    __version__ = _metadata.version("mamlkit")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

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
    "Predictions",
    "TaskScores",
    "__version__",
    "evaluate",
    "fit",
    "predict",
    "register_algorithm",
    "train_maml",
]
