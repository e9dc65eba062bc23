"""Model selection during training: validation evaluations, best weights, early stopping, a
wall-clock budget, and which weights ``eval`` tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mamlkit import MetaLearner
from mamlkit.cli import main
from mamlkit.errors import ConfigError
from mamlkit.io import load_tensors
from mamlkit.models import MLP
from mamlkit.training import EvalConfig, eval_run, train_run
from mamlkit.training import validation as validation_module
from mamlkit.training.build import build_dataset, build_sampler
from mamlkit.training.evaluation import EvalResult, evaluate
from mamlkit.training.loop import LoopState
from mamlkit.training.run_folder import BEST_WEIGHTS_FILE, load_run
from mamlkit.training.validation import TimeBudget, Validation, is_validation_record

from ..helpers.training_runs import SINUSOID, config_of, interrupt_at, omniglot_run, records

VALIDATED = {**SINUSOID, "validation": True, "validation_tasks": 8, "iterations": 12}


def validation_records(run: Path) -> list[dict]:
    return [r for r in records(run) if is_validation_record(r)]


def test_validation_is_logged_every_eval_every_and_the_best_weights_are_kept(tmp_path: Path):
    run = tmp_path / "run"
    summary = train_run(config_of(VALIDATED, eval_every=4), run)
    logged = validation_records(run)
    assert [r["iteration"] for r in logged] == [4, 8, 12]
    best = min(logged, key=lambda r: r["val_mse"])
    assert summary["validation"]["best_iteration"] == best["iteration"]
    assert summary["validation"]["evaluations"] == 3
    _, metadata = load_tensors(run / BEST_WEIGHTS_FILE)
    facts = json.loads(metadata["facts"])
    assert facts["iteration"] == best["iteration"] and facts["val_mse"] == best["val_mse"]
    # the kept weights really score what was logged: re-evaluate them on the validation tasks
    config, learner = load_run(run, weights="best")
    val_set = build_dataset(config, "val")
    sampler = build_sampler(config, val_set, queries=config.queries, meta_batch=25, seed=1)
    again = evaluate(learner, sampler, tasks=8, progress=False)
    torch.testing.assert_close(again.mse, best["val_mse"])
    # training records keep their own shape; the summary's timing ignores validation records
    train_records = [r for r in records(run) if not is_validation_record(r)]
    assert all("loss" in r for r in train_records)
    assert summary["train_seconds"] == pytest.approx(train_records[-1]["train_seconds"])


def test_eval_tests_the_best_weights_by_default_and_says_so(tmp_path: Path, capsys):
    run = tmp_path / "run"
    train_run(config_of(VALIDATED, eval_every=4), run)
    best = eval_run(run, EvalConfig(tasks=8, meta_batch=4), progress=False)
    record = json.loads((run / "eval.json").read_text())
    assert record["weights_file"] == BEST_WEIGHTS_FILE
    assert record["weights_facts"]["iteration"] in (4, 8, 12)
    assert record["environment"]["torch"] == torch.__version__
    final = eval_run(run, EvalConfig(tasks=8, meta_batch=4, weights="final"), progress=False)
    assert json.loads((run / "eval.json").read_text())["weights_file"] == "model.safetensors"
    if record["weights_facts"]["iteration"] != 12:  # different weights, different scores
        assert best.mse != final.mse
    assert main(["eval", str(run), "--tasks", "8", "--meta-batch", "4", "--no-progress"]) == 0
    assert "the best weights (iteration" in capsys.readouterr().out


def test_eval_of_best_weights_without_validation_names_the_fix(tmp_path: Path):
    run = tmp_path / "run"
    train_run(config_of(SINUSOID, iterations=2), run)
    with pytest.raises(ConfigError, match="only a run trained with --validation"):
        eval_run(run, EvalConfig(tasks=4, meta_batch=4, weights="best"), progress=False)
    eval_run(run, EvalConfig(tasks=4, meta_batch=4), progress=False)  # auto: the final ones
    assert json.loads((run / "eval.json").read_text())["weights_file"] == "model.safetensors"


def test_patience_stops_after_that_many_evaluations_without_improvement(monkeypatch):
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.7])

    def scripted_evaluate(*args, **kwargs) -> EvalResult:
        return EvalResult(accuracy=next(scores), ci95=0.0, std=0.0, tasks=1, inner_steps=1,
                          per_step_loss=[1.0, 1.0])  # fmt: skip

    monkeypatch.setattr(validation_module, "evaluate", scripted_evaluate)
    saved: list[int] = []
    validation = Validation(
        lambda: None,
        tasks=1,
        every=1,
        iterations=10,
        save_best=lambda learner, record: saved.append(record["iteration"]),
        patience=2,
    )
    validation.learner = MetaLearner(MLP(hidden=4), "maml", task="regression")
    state = LoopState()
    while state.stop_reason is None:
        state.iteration += 1
        validation.on_iteration_end(state)
    assert saved == [1, 2]  # 0.5, then 0.6; 0.55 and 0.58 do not improve on it
    assert state.iteration == 4 and state.stop_reason == "patience"


def test_early_stopping_ends_the_run_writes_everything_and_refuses_resume(tmp_path: Path):
    run = tmp_path / "run"
    # a large outer learning rate makes the validation score wander, so patience runs out
    config = config_of(
        VALIDATED, iterations=400, eval_every=1, patience=1, log_every=50, outer_lr=1.0
    )
    summary = train_run(config, run)
    assert summary["stopped_early"] == "patience"
    assert summary["iterations"] < 400
    assert records(run)[-2]["iteration"] == summary["iterations"]  # the last iteration logged
    assert (run / "model.safetensors").is_file() and (run / BEST_WEIGHTS_FILE).is_file()
    with pytest.raises(ConfigError, match="stopped early \\(patience\\)"):
        train_run(config, run, resume=True)


def test_time_budget_stops_when_training_time_reaches_it(tmp_path: Path):
    state = LoopState(iteration=3, train_seconds=59.9)
    budget = TimeBudget(60.0)
    budget.on_iteration_end(state)
    assert state.stop_reason is None
    state.train_seconds = 60.0
    budget.on_iteration_end(state)
    assert state.stop_reason == "budget"
    with pytest.raises(ValueError, match="positive number of seconds"):
        TimeBudget(0.0)
    run = tmp_path / "run"
    summary = train_run(config_of(SINUSOID, iterations=100000, budget_minutes=0.002), run)
    assert summary["stopped_early"] == "budget"
    assert 0 < summary["iterations"] < 100000
    assert summary["train_seconds"] >= 0.12
    # a rerun with the iterations the budget reached reproduces it exactly
    again = train_run(config_of(SINUSOID, iterations=summary["iterations"]), tmp_path / "again")
    assert again["task_stream_sha256"] == summary["task_stream_sha256"]
    a, b = (load_tensors(path / "model.safetensors")[0] for path in (run, tmp_path / "again"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)


def test_resume_restores_the_best_score_and_gives_the_same_run(tmp_path: Path):
    config = config_of(VALIDATED, eval_every=2, checkpoint_every=2, log_every=1)
    train_run(config, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "parts", callbacks=[interrupt_at(6)])
    train_run(config, tmp_path / "parts", resume=True)
    whole, parts = validation_records(tmp_path / "whole"), validation_records(tmp_path / "parts")
    assert [r["iteration"] for r in parts] == [r["iteration"] for r in whole]
    torch.testing.assert_close(
        torch.tensor([r["val_mse"] for r in parts]), torch.tensor([r["val_mse"] for r in whole])
    )
    a = load_tensors(tmp_path / "whole" / BEST_WEIGHTS_FILE)
    b = load_tensors(tmp_path / "parts" / BEST_WEIGHTS_FILE)
    assert json.loads(a[1]["facts"])["iteration"] == json.loads(b[1]["facts"])["iteration"]
    for name in a[0]:
        torch.testing.assert_close(b[0][name], a[0][name])


def test_validation_settings_without_validation_are_refused():
    with pytest.raises(ConfigError, match="--eval-every, --patience only apply with a validation"):
        config_of(SINUSOID, eval_every=3, patience=2)
    with pytest.raises(ConfigError, match="budget_minutes must be a finite number > 0"):
        config_of(SINUSOID, budget_minutes=0.0)
    with pytest.raises(ConfigError, match="weights must be one of auto, best, final"):
        EvalConfig(weights="latest")


@pytest.mark.slow
def test_omniglot_validation_uses_the_held_out_characters(omniglot_root: Path, tmp_path: Path):
    """On Omniglot the validation tasks come from the 100 held-out characters and are scored by
    accuracy."""
    run = tmp_path / "run"
    config = config_of(
        omniglot_run(omniglot_root), validation=True, validation_tasks=10, eval_every=3
    )
    summary = train_run(config, run)
    logged = validation_records(run)
    assert [r["iteration"] for r in logged] == [3, 6]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 and r["val_tasks"] == 10 for r in logged)
    assert summary["validation"]["best_score"] == max(r["val_accuracy"] for r in logged)
    assert build_dataset(config, "val").num_classes == 100  # no rotations outside training
