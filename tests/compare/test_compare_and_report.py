"""mamlkit compare: planning precedence, fairness, the results.json contract, report and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mamlkit.cli import main
from mamlkit.compare import COMPARE_PRESETS, plan_algorithms
from mamlkit.compare.report import ratio_sentence, recommendations, render_report
from mamlkit.compare.worker import CURVE_FILE, CurveEvaluation, run_plan
from mamlkit.io import load_tensors
from mamlkit.training import EvalConfig, TrainConfig, train_run
from tests.helpers.training_runs import interrupt_at

TINY = [
    "--ways",
    "3",
    "--shots",
    "1",
    "--queries",
    "2",
    "--meta-batch",
    "2",
    "--iterations",
    "4",
    "--hidden",
    "8",
    "--inner-steps",
    "2",
    "--inner-lr",
    "0.1",
    "--eval-tasks",
    "6",
    "--eval-meta-batch",
    "3",
    "--eval-queries",
    "2",
    "--curve-points",
    "2",
    "--curve-tasks",
    "3",
    "--device",
    "cpu",
    "--no-progress",
]

RECORD_FIELDS = {
    "name": str,
    "iterations": int,
    "train_seconds": float,
    "seconds_per_iteration": float,
    "peak_memory_bytes": int,
    "final_train_loss": float,
    "test_accuracy": float,
    "test_ci95": float,
    "test_std": float,
    "chance": float,
    "per_step_test_accuracy": list,
    "per_step_test_loss": list,
    "test_worst_decile_accuracy": float,
    "task_accuracies": list,
    "train_curve": list,
    "test_curve": list,
    "improvement_over_chance": float,
}


@pytest.fixture(scope="module")
def comparison(omniglot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "cmp"
    code = main(
        [
            "compare",
            "--algorithms",
            "maml,fomaml,mamlpp",
            "--data-root",
            str(omniglot_root),
            "--out",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    return out


def test_results_json_follows_the_contract(comparison: Path) -> None:
    results = json.loads((comparison / "results.json").read_text())
    assert set(results) >= {"environment", "config", "algorithms"}
    assert results["environment"]["torch"]
    assert [a["name"] for a in results["algorithms"]] == ["maml", "fomaml", "mamlpp"]
    for record in results["algorithms"]:
        for key, kind in RECORD_FIELDS.items():
            assert isinstance(record[key], kind), (record["name"], key, record[key])
        assert record["iterations"] == 4 and record["chance"] == pytest.approx(1 / 3)
        assert 0 <= record["test_accuracy"] <= 1 and record["peak_memory_bytes"] > 0
        assert len(record["per_step_test_accuracy"]) == 3  # step 0, 1, 2
        assert len(record["task_accuracies"]) == 6
        assert [p["iteration"] for p in record["test_curve"]] == [2, 4]
        assert record["process_seconds"] > record["train_seconds"] > 0
    assert results["algorithms"][2]["learned_inner_lrs"]  # mamlpp learns its inner LRs
    assert results["algorithms"][0]["learned_inner_lrs"] is None
    assert results["config"]["command"].startswith("mamlkit compare --algorithms maml,fomaml")


def test_algorithms_see_identical_tasks_and_weights(comparison: Path) -> None:
    records = json.loads((comparison / "results.json").read_text())["algorithms"]
    for key in ("task_stream_sha256", "initial_weights_sha256", "test_tasks_sha256"):
        assert len({r[key] for r in records}) == 1, key
    # and the digests do depend on the data: another seed gives another stream
    assert records[0]["task_stream_sha256"] != records[0]["test_tasks_sha256"]


def test_report_and_plots_are_written(comparison: Path) -> None:
    report = (comparison / "report.md").read_text()
    for name in ("maml", "fomaml", "mamlpp"):
        assert f"| {name} |" in report
    assert "faster" in report or "slower" in report
    assert "Identical training task stream: yes" in report
    for png in (
        "training_loss.png",
        "accuracy_vs_time.png",
        "adaptation_curves.png",
        "task_accuracy_distribution.png",
        "learned_lrs.png",
    ):
        assert (comparison / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in report


def test_report_command_rewrites_report_from_results(
    comparison: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (comparison / "report.md").unlink()
    (comparison / "training_loss.png").unlink()
    assert main(["report", str(comparison)]) == 0
    assert "| fomaml |" in (comparison / "report.md").read_text()
    assert (comparison / "training_loss.png").is_file()
    assert main(["report", str(tmp_path)]) == 2
    assert "no " in capsys.readouterr().err


def test_resume_skips_finished_algorithms_and_refusal_without_it(
    comparison: Path, omniglot_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (comparison / "maml" / "result.json").read_text()
    args = [
        "compare",
        "--algorithms",
        "maml,fomaml,mamlpp",
        "--data-root",
        str(omniglot_root),
        "--out",
        str(comparison),
        *TINY,
    ]
    assert main(args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert capsys.readouterr().out.count("skipped (--resume)") == 3
    assert (comparison / "maml" / "result.json").read_text() == before
    changed = [*args, "--resume", "--eval-tasks", "5"]
    assert main(changed) == 2
    assert "other settings" in capsys.readouterr().err


def test_plan_precedence_preset_then_file_then_flags() -> None:
    preset = COMPARE_PRESETS.get("paper")
    plans = plan_algorithms(
        preset,
        ["maml", "mamlpp"],
        train_layers=[{"seed": 3, "iterations": 10}, {"iterations": 20}],
        eval_layers=[{"tasks": 50}],
    )
    assert (
        plans["maml"]["train"]["inner_steps"] == 1 and plans["mamlpp"]["train"]["inner_steps"] == 5
    )
    assert plans["maml"]["evaluation"]["inner_steps"] == 3
    assert plans["mamlpp"]["evaluation"]["inner_steps"] is None
    for plan in plans.values():
        assert plan["train"]["seed"] == 3 and plan["train"]["iterations"] == 20
        assert plan["evaluation"]["tasks"] == 50
    with pytest.raises(ValueError, match="did you mean 'fomaml'"):
        plan_algorithms(preset, ["fomamll"])
    with pytest.raises(ValueError, match="twice"):
        plan_algorithms(preset, ["maml", "maml"])


def fake(
    name: str,
    seconds: float,
    memory: int,
    accuracy: float,
    ci: float = 0.005,
    curve: tuple[float, ...] = (0.2, 0.9),
) -> dict:
    return {
        "name": name,
        "train_seconds": seconds,
        "peak_memory_bytes": memory,
        "test_accuracy": accuracy,
        "test_ci95": ci,
        "test_std": 0.05,
        "per_step_test_accuracy": list(curve),
    }


def test_ratio_sentence_is_computed_from_the_numbers() -> None:
    base = fake("maml", 290.0, 1000, 0.950)
    other = fake("fomaml", 100.0, 590, 0.938)
    assert ratio_sentence(base, other) == (
        "**fomaml** is 2.9x faster and uses 41% less memory than **maml**, and is 1.2 points "
        "less accurate (beyond the 95% confidence intervals)."
    )
    close = fake("mamlpp", 580.0, 1500, 0.953)
    assert "2.0x slower and uses 50% more memory" in ratio_sentence(base, close)
    assert "within the 95%" in ratio_sentence(base, close)


def test_recommendations_follow_the_measurements() -> None:
    algos = [
        fake("maml", 300.0, 1000, 0.95),
        fake("fomaml", 100.0, 600, 0.948),
        fake("mamlpp", 400.0, 1200, 0.90, curve=(0.2, 0.93, 0.90)),
    ]
    text = "\n".join(recommendations(algos))
    assert "Highest test accuracy: **maml**" in text
    assert "**fomaml** trains fastest" in text
    assert "Least peak memory: **fomaml**" in text
    assert "mamlpp overshoots: test accuracy peaks after inner step 1" in text


def test_an_algorithm_at_chance_is_named_and_not_called_the_most_stable() -> None:
    stuck = {**fake("mamlpp[bn_per_step_stats=true]", 500.0, 1500, 0.208), "chance": 0.2}
    stuck["test_std"] = 0.03
    algos = [{**fake("maml", 300.0, 1000, 0.86), "chance": 0.2}, stuck]
    text = "\n".join(recommendations(algos))
    assert "**mamlpp[bn_per_step_stats=true]** did not learn in this setting" in text
    assert (
        "Most stable across test tasks (lowest standard deviation of per-task accuracy, "
        "among those that learned): **maml**" in text
    )


def test_render_report_without_plots_or_memory() -> None:
    record = {
        **fake("maml", 10.0, None, 0.5),
        "test_worst_decile_accuracy": 0.3,
        "improvement_over_chance": 0.3,
        "seconds_per_iteration": 0.1,
        "final_train_loss": 1.0,
        "test_tasks": 10,
        "evaluation": {"queries": 15, "inner_steps": None},
        "config": TrainConfig().to_dict(),
        "task_stream_sha256": "a",
        "initial_weights_sha256": "b",
        "test_tasks_sha256": "c",
        "peak_memory_method": "not measured",
        "device": "cpu",
    }
    results = {
        "algorithms": [record],
        "environment": {"torch": "x"},
        "config": {"preset": "quick", "preset_description": "d", "command": "mamlkit x"},
    }
    report = render_report(results, {})
    assert "| maml | 50.00% +- 0.50% |" in report and "not measured" in report
    assert "shared by all algorithms: dataset omniglot, ways 5" in report


def test_unconverged_algorithms_are_named_and_not_ranked() -> None:
    flat = [{"val_accuracy": v, "val_ci95": 0.02} for v in (0.80, 0.90, 0.905, 0.903)]
    rising = [{"val_accuracy": v, "val_ci95": 0.02} for v in (0.50, 0.60, 0.70, 0.80)]
    algos = [
        {**fake("maml", 300.0, 1000, 0.90), "validation_curve": flat},
        {**fake("fomaml", 100.0, 600, 0.95), "validation_curve": rising},
    ]
    text = "\n".join(recommendations(algos))
    assert "Not converged (still improving at the end, so not ranked): fomaml" in text
    assert "Highest test accuracy: **maml**" in text  # fomaml's higher snapshot is not ranked
    nothing = "\n".join(recommendations(algos[1:]))
    assert "No algorithm had converged, so none is recommended" in nothing
    assert "Highest test accuracy" not in nothing


def test_budget_mode_gives_every_algorithm_the_same_training_time(
    omniglot_root: Path, tmp_path: Path
) -> None:
    """``--budget-minutes``: each algorithm trains until its training time reaches the budget;
    the iterations reached differ by speed, and rerunning one with those iterations (no budget)
    reproduces its weights exactly."""
    out = tmp_path / "budget"
    budget = 0.05  # 3 s of training each
    args = [a for a in TINY if a not in ("--iterations", "4")]
    args += ["--iterations", "100000", "--budget-minutes", str(budget)]
    args += ["--validation", "--eval-every", "5", "--validation-tasks", "3"]
    where = ["--data-root", str(omniglot_root), "--out", str(out)]
    code = main(["compare", "--algorithms", "maml,fomaml", *where, *args])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    reached = {}
    for record in results["algorithms"]:
        assert record["stopped_early"] == "budget" and record["budget_minutes"] == budget
        assert 60 * budget <= record["train_seconds"] < 60 * budget + 5
        assert record["validation_curve"] and record["weights_file"] == "model.best.safetensors"
        assert len(record["test_curve"]) == 2  # the curve points come by training time
        reached[record["name"]] = record["iterations"]
    assert reached["fomaml"] > reached["maml"]  # first order is cheaper per iteration
    report = (out / "report.md").read_text()
    assert "Equal wall-clock budget: every algorithm trained for 0.05 minutes" in report
    assert (out / "validation_vs_time.png").is_file()
    # a rerun of maml with the iterations it reached, no budget, reproduces its weights
    plan = json.loads((out / "maml" / "plan.json").read_text())["train"]
    plan.update(iterations=reached["maml"], budget_minutes=None)
    again = tmp_path / "again"
    train_run(TrainConfig(**plan), again)
    a = load_tensors(out / "maml" / "run" / "model.safetensors")[0]
    b = load_tensors(again / "model.safetensors")[0]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)


def test_resume_continues_an_algorithm_interrupted_mid_training(
    omniglot_root: Path, tmp_path: Path
) -> None:
    """A worker stopped mid-training (Ctrl-C, or a lost machine after a checkpoint) continues
    from its run's checkpoint with ``--resume``: the result equals an uninterrupted run's, and
    the curve points measured before the stop are kept."""
    plan = plan_algorithms(
        COMPARE_PRESETS.get("quick"),
        ["maml"],
        train_layers=[
            {"data_root": str(omniglot_root), "ways": 3, "queries": 2, "meta_batch": 2},
            {"iterations": 8, "hidden": 8, "checkpoint_every": 2, "device": "cpu"},
            {"progress": False},
        ],
        eval_layers=[{"tasks": 6, "meta_batch": 3, "queries": 2}],
    )["maml"]
    plan.update(curve_points=4, curve_tasks=3)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for folder in (whole, parts):
        folder.mkdir()
        (folder / "plan.json").write_text(json.dumps(plan))
    expected = run_plan(whole)
    config = TrainConfig(**plan["train"])
    evaluation = EvalConfig(**plan["evaluation"])
    curve = CurveEvaluation(config, evaluation, {2, 4, 6, 8}, 3)
    curve.keep_points_up_to(parts / CURVE_FILE, 0)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, parts / "run", callbacks=[curve, interrupt_at(5)])
    assert [p["iteration"] for p in json.loads((parts / CURVE_FILE).read_text())] == [2, 4]
    resumed = run_plan(parts, resume=True)
    assert [p["iteration"] for p in resumed["test_curve"]] == [2, 4, 6, 8]
    assert resumed["test_accuracy"] == expected["test_accuracy"]
    assert resumed["iterations"] == expected["iterations"] == 8
    a = load_tensors(whole / "run" / "model.safetensors")[0]
    b = load_tensors(parts / "run" / "model.safetensors")[0]
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)
    # a finished training whose evaluation was lost is evaluated, not trained again
    (parts / "result.json").unlink()
    again = run_plan(parts, resume=True)
    assert again["test_accuracy"] == expected["test_accuracy"]
