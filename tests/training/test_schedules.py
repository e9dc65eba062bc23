"""The outer learning-rate schedule is the same from every entry point: ``train_maml`` and
``mamlkit train`` give MAML++ the same cosine schedule and so the same trained weights; a cosine
schedule needs a known run length."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from mamlkit import MetaLearner, train_maml
from mamlkit.training import (
    Callback,
    LoopState,
    build_dataset,
    build_learner,
    build_sampler,
    train_run,
)
from mamlkit.training import loop as loop_module
from mamlkit.training.build import make_scheduler
from mamlkit.training.schedules import DEFAULT_OUTER_LR_MIN
from tests.helpers.blobs import Flat, linear_tasks
from tests.helpers.training_runs import SINUSOID, config_of, weights


def record_rates(monkeypatch: pytest.MonkeyPatch) -> list[list[float]]:
    """The outer learning rate after every iteration of each :func:`fit` that ``train_maml``
    calls, one list per call."""
    runs: list[list[float]] = []
    real_fit = loop_module.fit

    def fit(
        learner: MetaLearner, episodes: Any, optimizer: torch.optim.Optimizer, **options: Any
    ) -> list[float]:
        rates: list[float] = []
        runs.append(rates)

        class Rates(Callback):
            def on_iteration_end(self, state: LoopState) -> None:
                rates.append(optimizer.param_groups[0]["lr"])

        options["callbacks"] = [*options.get("callbacks", ()), Rates()]
        return real_fit(learner, episodes, optimizer, **options)

    monkeypatch.setattr(loop_module, "fit", fit)
    return runs


def cosine(start: float, floor: float, iterations: int) -> torch.Tensor:
    """The cosine-annealed rate after each of ``iterations`` steps, in closed form."""
    return torch.tensor(
        [floor + (start - floor) * (1 + math.cos(math.pi * t / iterations)) / 2
         for t in range(1, iterations + 1)],
        dtype=torch.float64,
    )  # fmt: skip


def test_train_maml_and_mamlkit_train_give_mamlpp_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_of(SINUSOID, algorithm="mamlpp", inner_steps=2, inner_lr=0.1, outer_lr=0.01)
    train_run(config, tmp_path / "run")  # what mamlkit train --config ... runs
    dataset = build_dataset(config, "train")
    tasks = build_sampler(
        config, dataset, queries=config.queries, meta_batch=config.meta_batch, seed=config.seed
    )
    model = build_learner(
        config, dataset.image_shape, task="regression", num_outputs=dataset.num_outputs
    ).model  # the run's initial weights
    rates = record_rates(monkeypatch)
    _, learner, _ = train_maml(
        model, tasks, inner_lr=0.1, outer_lr=0.01, inner_steps=2, plus_plus=True,
        iterations=config.iterations, progress=False, task="regression",
    )  # fmt: skip

    # the learning rates: the CLI's scheduler, stepped as training steps it, and the closed form
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=config.outer_lr)
    scheduler = make_scheduler(config, optimizer)
    assert scheduler is not None
    expected = []
    for _ in range(config.iterations):
        optimizer.step()
        scheduler.step()
        expected.append(optimizer.param_groups[0]["lr"])
    assert rates == [expected]
    torch.testing.assert_close(
        torch.tensor(expected, dtype=torch.float64),
        cosine(config.outer_lr, DEFAULT_OUTER_LR_MIN, config.iterations),
    )
    # the trained weights, learned inner rates and per-step tables: bit for bit
    got, want = learner.state_dict(), weights(tmp_path / "run")
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)


def test_train_maml_schedule_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    rates = record_rates(monkeypatch)
    batches = [linear_tasks(4, seed=s) for s in range(5)]
    common = {"inner_lr": 0.1, "outer_lr": 0.01, "inner_steps": 1, "progress": False}
    train_maml(Flat(), batches, **common)  # MAML: constant
    train_maml(Flat(), batches, plus_plus=True, outer_lr_schedule="constant", **common)
    # a cosine schedule over len(loader) iterations, down to the floor given
    train_maml(Flat(), batches, outer_lr_schedule="cosine", outer_lr_min=1e-4, **common)
    assert rates[0] == rates[1] == [0.01] * 5
    torch.testing.assert_close(torch.tensor(rates[2], dtype=torch.float64), cosine(0.01, 1e-4, 5))
    with pytest.raises(ValueError, match="outer_lr_schedule must be one of constant, cosine"):
        train_maml(Flat(), batches, outer_lr_schedule="linear", **common)


def test_a_cosine_schedule_needs_a_known_number_of_iterations() -> None:
    def endless() -> Iterator[tuple[torch.Tensor, ...]]:
        while True:
            yield linear_tasks(2)

    common = {"inner_lr": 0.1, "inner_steps": 1, "progress": False}
    with pytest.raises(ValueError, match=r"cosine .* task loader is endless: pass iterations=N"):
        train_maml(Flat(), endless(), plus_plus=True, **common)
    _, _, losses = train_maml(Flat(), endless(), plus_plus=True, iterations=2, **common)
    assert len(losses) == 2
