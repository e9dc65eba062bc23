"""The algorithms: one file each, every one a preset of the settings of the one inner loop.

``maml.py``, ``fomaml.py``, ``mamlpp.py`` (with ``fomamlpp``), ``anil.py``, ``boil.py``,
``metasgd.py`` and ``reptile.py`` each hold everything that makes their algorithm: its
registered :class:`AlgorithmSpec` and paper reference, the defaults it owns, the components only
it uses (MAML++'s multi-step loss and annealing, Reptile's outer gradient; see :mod:`.hooks`) and
its published protocol. Shared pieces (update rules, per-step tables) come from
:mod:`mamlkit.core`. Adding an algorithm is adding one file that registers its spec (and
importing it below), or, from another package, a ``mamlkit.algorithms`` entry point.

>>> from mamlkit.algorithms import ALGORITHMS
>>> ALGORITHMS.names()
['anil', 'boil', 'fomaml', 'fomamlpp', 'maml', 'mamlpp', 'metasgd', 'reptile']
"""

from mamlkit.algorithms import anil, boil, fomaml, maml, mamlpp, metasgd, reptile
from mamlkit.algorithms.hooks import AlgorithmHooks
from mamlkit.algorithms.spec import (
    ALGORITHMS,
    OUTER_LR_SCHEDULES,
    AlgorithmSpec,
    parse_algorithm,
    register_algorithm,
    resolve_algorithm,
)

#: The modules of the built-in algorithms, one per file.
BUILT_IN = (anil, boil, fomaml, maml, mamlpp, metasgd, reptile)
#: The algorithm a learner, a run config and ``mamlkit train`` use unless told otherwise: MAML.
DEFAULT_ALGORITHM = maml.SPEC.name

__all__ = [
    "ALGORITHMS",
    "BUILT_IN",
    "DEFAULT_ALGORITHM",
    "OUTER_LR_SCHEDULES",
    "AlgorithmHooks",
    "AlgorithmSpec",
    "parse_algorithm",
    "register_algorithm",
    "resolve_algorithm",
]
