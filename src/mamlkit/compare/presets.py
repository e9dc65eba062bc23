"""Comparison presets: which algorithms, trained and evaluated how.

A preset holds train-config values shared by every algorithm, per-algorithm values (a paper's
protocol differs by algorithm), and the evaluation settings. Command-line options override both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mamlkit.registry import Registry


@dataclass(frozen=True)
class ComparePreset:
    """Settings of a comparison run (see ``mamlkit compare --help``)."""

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
        return {**self.train, **self.per_algorithm.get(algorithm, {}), "algorithm": algorithm}

    def evaluation_values(self, algorithm: str) -> dict[str, Any]:
        """Eval-config values for ``algorithm``: shared ones, then its own."""
        return {**self.evaluation, **self.per_algorithm_evaluation.get(algorithm, {})}


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
        algorithms=("maml", "fomaml", "mamlpp"),
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
            "seed": 0,
        },
        evaluation={"tasks": 400, "queries": 15, "seed": 0, "meta_batch": 25},
        curve_points=4,
        curve_tasks=50,
    ),
)

COMPARE_PRESETS.add(
    "paper",
    ComparePreset(
        name="paper",
        description=(
            "each algorithm's published Omniglot 5-way 1-shot protocol (Finn et al. 2017 for "
            "maml/fomaml: 60k iterations of 32 tasks, 1 step of lr 0.4, 3 steps at test; "
            "Antoniou et al. 2019 for mamlpp/fomamlpp: 50k iterations of 8 tasks, 5 steps, "
            "initial inner lr 0.1, cosine-annealed meta lr); hours on a GPU"
        ),
        algorithms=("maml", "fomaml", "mamlpp"),
        train={
            "dataset": "omniglot",
            "ways": 5,
            "shots": 1,
            "queries": 1,
            "seed": 0,
            "outer_lr": 0.001,
            "log_every": 50,
        },
        per_algorithm={
            name: {"iterations": 60000, "meta_batch": 32, "inner_steps": 1, "inner_lr": 0.4}
            for name in ("maml", "fomaml")
        }
        | {
            name: {
                "iterations": 50000,
                "meta_batch": 8,
                "inner_steps": 5,
                "inner_lr": 0.1,
                "msl_anneal_iterations": 5000,
                "outer_lr_schedule": "cosine",
                "outer_lr_min": 1e-5,
            }
            for name in ("mamlpp", "fomamlpp")
        },
        evaluation={"tasks": 600, "queries": 15, "seed": 0, "meta_batch": 25},
        per_algorithm_evaluation={"maml": {"inner_steps": 3}, "fomaml": {"inner_steps": 3}},
        curve_points=20,
        curve_tasks=200,
    ),
)
