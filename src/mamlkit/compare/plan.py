"""What a comparison will run: each algorithm's resolved train and eval configs, checked before
any training starts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mamlkit.algorithms import resolve_algorithm
from mamlkit.compare.presets import ComparePreset
from mamlkit.errors import ConfigError
from mamlkit.training import EvalConfig, TrainConfig, build_config
from mamlkit.training.build import registered_task
from mamlkit.training.config import TEST_OVERRIDES
from mamlkit.vocabulary import TaskKind


def require_classification(dataset: str) -> None:
    """Comparisons report accuracies: a regression dataset (``sinusoid``) is refused up front."""
    task = registered_task(dataset)
    if task != TaskKind.CLASSIFICATION:
        raise ConfigError(
            f"compare supports classification datasets only; {dataset!r} is a {task} dataset: "
            "train and evaluate it with mamlkit train and mamlkit eval"
        )


def require_trained_setting(evaluation: EvalConfig) -> None:
    """A comparison tests every algorithm on the tasks it trained on, with its own inner rates
    (its test curve is measured on them during training), so ``eval_ways``, ``eval_shots`` and
    ``eval_inner_lr`` are refused; ``mamlkit eval`` tests a finished run with other ones."""
    given = [key for key in TEST_OVERRIDES if getattr(evaluation, key) is not None]
    if given:
        keys = ", ".join(f"eval_{key}" for key in given)
        raise ConfigError(
            f"{keys}: compare tests every algorithm on the tasks it trained on; set the train "
            "values instead (e.g. shots), or test a finished run with mamlkit eval RUN --shots K"
        )


def plan_algorithms(
    preset: ComparePreset,
    algorithms: Sequence[str] | None = None,
    *,
    train_layers: Sequence[dict[str, Any]] = (),
    eval_layers: Sequence[dict[str, Any]] = (),
) -> dict[str, dict[str, Any]]:
    """The resolved plan (train config, eval config, curve settings) of every algorithm.

    Precedence, low to high: the preset's shared values, its per-algorithm values, then each of
    ``train_layers`` / ``eval_layers`` in order (config file, then command-line flags).
    ``algorithms`` defaults to the preset's. Every name and value is checked here, before any
    training starts; regression datasets are refused (comparisons report accuracies).

    >>> from mamlkit.compare import COMPARE_PRESETS, plan_algorithms
    >>> plans = plan_algorithms(
    ...     COMPARE_PRESETS.get("quick"), ["maml", "anil"], train_layers=[{"iterations": 50}]
    ... )
    >>> sorted(plans), sorted(plans["anil"])
    (['anil', 'maml'], ['curve_points', 'curve_tasks', 'evaluation', 'train'])
    >>> plans["anil"]["train"]["iterations"], plans["anil"]["evaluation"]["tasks"]
    (50, 400)
    """
    names = list(algorithms) if algorithms else list(preset.algorithms)
    if len(set(names)) != len(names):
        raise ConfigError(f"--algorithms lists a name twice: {','.join(names)}")
    plans: dict[str, dict[str, Any]] = {}
    for name in names:
        resolve_algorithm(name)  # unknown names and bad variants fail here, with "did you mean"
        train_values = [
            {k: v for k, v in layer.items() if k != "algorithm"} for layer in train_layers
        ]
        train = build_config(
            TrainConfig,
            {"log_every": 1},
            preset.train_values(name),
            *train_values,
            {"algorithm": name},
        )
        require_classification(train.dataset)
        evaluation = build_config(EvalConfig, preset.evaluation_values(name), *eval_layers)
        require_trained_setting(evaluation)
        plans[name] = {
            "train": train.to_dict(),
            "evaluation": evaluation.to_dict(),
            "curve_points": preset.curve_points,
            "curve_tasks": preset.curve_tasks,
        }
    return plans
