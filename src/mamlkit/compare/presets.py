"""Comparison presets: which algorithms, trained and evaluated how.

A preset holds train-config values shared by every algorithm, per-algorithm values (a paper's
protocol differs by algorithm), and the evaluation settings. An algorithm without values of its own
gets the shared ones. Command-line options override both. ``mamlkit compare --preset NAME`` runs a
preset's algorithms; ``mamlkit train --preset NAME --algorithm A`` trains one of them with the
preset's values as the lowest layer. The sources of the ``paper*`` values: docs/presets.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mamlkit.algorithms import mamlpp
from mamlkit.algorithms.maml import OMNIGLOT_MODEL as FINN_2017_MODEL
from mamlkit.algorithms.maml import OMNIGLOT_PROTOCOL as FINN_2017
from mamlkit.algorithms.maml import OMNIGLOT_SHARED as FINN_2017_SHARED
from mamlkit.registry import Registry


@dataclass(frozen=True)
class ComparePreset:
    """Settings of a comparison run (see ``mamlkit compare --help``).

    Attributes:
        name: the registry name (``--preset``).
        description: what the preset is for, shown by ``mamlkit list``.
        algorithms: the algorithms ``mamlkit compare`` runs by default.
        train: :class:`~mamlkit.config.TrainConfig` values shared by every algorithm.
        per_algorithm: an algorithm's own train values, over the shared ones (a variant
            ``"mamlpp[...]"`` uses the entry of its preset ``mamlpp``).
        evaluation: :class:`~mamlkit.config.EvalConfig` values shared by every algorithm.
        per_algorithm_evaluation: an algorithm's own evaluation values.
        curve_points: test evaluations during training (the accuracy-vs-time curve).
        curve_tasks: test tasks of each of those evaluations.

    >>> from mamlkit.compare import COMPARE_PRESETS
    >>> paper = COMPARE_PRESETS.get("paper-5way-1shot")
    >>> paper.train_values("maml")["meta_batch"], paper.train_values("mamlpp")["meta_batch"]
    (32, 8)
    >>> paper.train_values("mamlpp[bn_per_step_stats=true]")["meta_batch"]
    8
    """

    name: str
    description: str
    algorithms: tuple[str, ...]
    train: dict[str, Any] = field(default_factory=dict)
    per_algorithm: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    per_algorithm_evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)
    curve_points: int = 6  # test-accuracy evaluations during training (for accuracy vs time)
    curve_tasks: int = 100

    def train_values(self, algorithm: str) -> dict[str, Any]:
        """Train-config values for ``algorithm``: shared ones, then its own."""
        own = _own_values(self.per_algorithm, algorithm)
        return {**self.train, **own, "algorithm": algorithm}

    def evaluation_values(self, algorithm: str) -> dict[str, Any]:
        """Eval-config values for ``algorithm``: shared ones, then its own."""
        return {**self.evaluation, **_own_values(self.per_algorithm_evaluation, algorithm)}


def _own_values(table: dict[str, dict[str, Any]], algorithm: str) -> dict[str, Any]:
    """``algorithm``'s entry of ``table``; a variant ``"mamlpp[...]"`` uses its preset's entry."""
    if algorithm in table:
        return table[algorithm]
    return table.get(algorithm.partition("[")[0].strip(), {})


#: Comparison presets by name (``mamlkit compare --preset NAME``): ``quick`` (a short CPU run of
#: seven algorithms under equal settings), ``paper-{5,20}way-{1,5}shot`` (each algorithm's published
#: Omniglot protocol) and ``paper`` (the same as ``paper-5way-1shot``).
COMPARE_PRESETS: Registry[ComparePreset] = Registry("compare preset")

COMPARE_PRESETS.add(
    "quick",
    ComparePreset(
        name="quick",
        description=(
            "Omniglot 5-way 1-shot sized for a 2-core CPU (minutes, not hours): every algorithm "
            "gets the same short budget and settings, so the numbers compare the algorithms "
            "under equal conditions, not their papers' full protocols (see the paper preset)"
        ),
        algorithms=("maml", "fomaml", "mamlpp", "anil", "boil", "metasgd", "reptile"),
        train={
            "dataset": "omniglot",
            "ways": 5,
            "shots": 1,
            "queries": 1,
            "inner_steps": 2,
            "inner_lr": 0.4,
            "meta_batch": 16,
            "outer_lr": 0.003,
            "iterations": 300,
            "msl_anneal_iterations": 150,
            # MAML++'s derivative-order annealing is off, as in its released configs (-1)
            "first_order_iterations": 0,
            "seed": 0,
        },
        evaluation={"tasks": 400, "queries": 15, "seed": 0, "meta_batch": 25},
        curve_points=4,
        curve_tasks=50,
    ),
)


COMPARE_PRESETS.add(
    "standard",
    ComparePreset(
        name="standard",
        description=(
            "Omniglot 5-way 1-shot trained until the validation accuracy plateaus: Finn et al.'s "
            "strided Conv4 and 5-way settings (32 tasks, 1 step of 0.4, 3 at test) for every "
            "algorithm but MAML++ (Antoniou et al.'s: 8 tasks, 5 learned steps, cosine meta lr), "
            "validation on the 100 held-out characters every 1000 iterations, the best weights "
            "tested; 20000 iterations (about 10 minutes per algorithm on an H200, a day on a "
            "2-core CPU), or equal time with --budget-minutes"
        ),
        algorithms=("maml", "fomaml", "mamlpp", "anil", "boil", "metasgd", "reptile"),
        train={
            "dataset": "omniglot",
            "model": FINN_2017_MODEL,
            "ways": 5,
            "shots": 1,
            "queries": 1,
            "iterations": 20000,
            "meta_batch": FINN_2017[5]["meta_batch"],
            "inner_steps": FINN_2017[5]["inner_steps"],
            "inner_lr": FINN_2017[5]["inner_lr"],
            "outer_lr": FINN_2017_SHARED["outer_lr"],
            "validation": True,
            "eval_every": 1000,
            "validation_tasks": 200,
            "validation_steps": FINN_2017[5]["test_steps"],
            "seed": 0,
            "log_every": 10,
        },
        per_algorithm={
            name: {
                **mamlpp.OMNIGLOT_PROTOCOL,
                "iterations": 20000,
                "validation_steps": None,  # its learned per-step rates: as many steps as trained
            }
            for name in ("mamlpp", "fomamlpp")
        },
        evaluation={
            "tasks": FINN_2017_SHARED["test_tasks"],
            "queries": 15,
            "seed": 0,
            "meta_batch": 25,
            "inner_steps": FINN_2017[5]["test_steps"],
        },
        per_algorithm_evaluation={
            name: dict(mamlpp.OMNIGLOT_EVALUATION) for name in ("mamlpp", "fomamlpp")
        },
        curve_points=0,  # the validation curve is the accuracy-vs-time curve
    ),
)


# The published Omniglot protocols live with their algorithms: Finn et al.'s in
# mamlkit.algorithms.maml (used for maml, fomaml and every algorithm without a protocol of its
# own: anil, boil, metasgd, reptile; see docs/presets.md for why) and Antoniou et al.'s in
# mamlkit.algorithms.mamlpp (mamlpp, fomamlpp).
PAPER_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def paper_preset(ways: int, shots: int, name: str | None = None) -> ComparePreset:
    """The published protocols for Omniglot ``ways``-way ``shots``-shot (sources above)."""
    finn = FINN_2017[ways]
    name = name or f"paper-{ways}way-{shots}shot"
    steps = f"{finn['inner_steps']} step{'s' if finn['inner_steps'] > 1 else ''}"
    return ComparePreset(
        name=name,
        description=(
            f"each algorithm's published Omniglot {ways}-way {shots}-shot protocol (Finn et al. "
            f"2017 for maml/fomaml and, by default, any other algorithm: their strided Conv4, "
            f"60k iterations of {finn['meta_batch']} tasks, {steps} of lr "
            f"{finn['inner_lr']}, {finn['test_steps']} at test; Antoniou et al. 2019 for "
            f"mamlpp/fomamlpp: the max-pooled Conv4, 50k iterations of 8 tasks, 5 steps, initial "
            "inner lr 0.1, cosine-annealed meta lr); meant for a GPU"
        ),
        algorithms=("maml", "fomaml", "mamlpp"),
        train={
            "dataset": "omniglot",
            "model": FINN_2017_MODEL,
            "ways": ways,
            "shots": shots,
            "queries": shots,
            "iterations": FINN_2017_SHARED["iterations"],
            "meta_batch": finn["meta_batch"],
            "inner_steps": finn["inner_steps"],
            "inner_lr": finn["inner_lr"],
            "outer_lr": FINN_2017_SHARED["outer_lr"],
            "seed": 0,
            "log_every": 50,
        },
        per_algorithm={
            "mamlpp": {**mamlpp.OMNIGLOT_PROTOCOL, "model": "conv4"},
            "fomamlpp": {**mamlpp.OMNIGLOT_PROTOCOL, "model": "conv4"},
        },
        # 600 test tasks as in Finn et al.'s main.py (NUM_TEST_POINTS) and the MAML++ configs;
        # 15 query images per class is this package's test convention (Finn et al.'s code scores
        # as many per class as shots, the MAML++ configs 1).
        evaluation={
            "tasks": FINN_2017_SHARED["test_tasks"],
            "queries": 15,
            "seed": 0,
            "meta_batch": 25,
            "inner_steps": finn["test_steps"],
        },
        per_algorithm_evaluation={
            "mamlpp": dict(mamlpp.OMNIGLOT_EVALUATION),
            "fomamlpp": dict(mamlpp.OMNIGLOT_EVALUATION),
        },
        curve_points=20,
        curve_tasks=200,
    )


for _ways, _shots in PAPER_SETTINGS:
    COMPARE_PRESETS.add(f"paper-{_ways}way-{_shots}shot", paper_preset(_ways, _shots))
_PAPER = paper_preset(5, 1, name="paper")
COMPARE_PRESETS.add(
    "paper",
    dataclasses.replace(_PAPER, description="same as paper-5way-1shot: " + _PAPER.description),
)
