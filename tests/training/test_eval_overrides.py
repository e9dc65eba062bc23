"""``mamlkit eval`` on other tasks than the run trained on: ``--shots`` and ``--inner-lr`` are
honoured and recorded, ``--ways`` and what a run cannot honour are refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mamlkit import ALGORITHMS, MetaLearner
from mamlkit.cli import build_parser, main
from mamlkit.compare import COMPARE_PRESETS, plan_algorithms
from mamlkit.errors import ConfigError
from mamlkit.training import EvalConfig, TrainConfig, eval_run
from mamlkit.training.evaluation import evaluated_config
from mamlkit.training.run_folder import load_config

TINY = ["--meta-batch", "2", "--iterations", "2", "--device", "cpu", "--no-progress"]
SMALL_EVAL = ["--tasks", "4", "--meta-batch", "2", "--queries", "2", "--no-progress"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def omniglot_run(omniglot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-way 1-shot MAML run with a fixed inner rate of 0.1."""
    out = tmp_path_factory.mktemp("overrides") / "omniglot"
    options = ["--ways", "3", "--shots", "1", "--queries", "2", "--hidden", "4"]
    data = ["--data-root", str(omniglot_root)]
    assert main(["train", *data, *options, "--inner-lr", "0.1", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def sinusoid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-shot sinusoid run, its model left to the dataset's default."""
    out = tmp_path_factory.mktemp("overrides") / "sinusoid"
    options = ["--dataset", "sinusoid", "--hidden", "8", "--shots", "5", "--queries", "5"]
    assert main(["train", *options, *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def supports(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The support sets (inputs, targets) of every meta-batch the learner is tested on."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    score_tasks = MetaLearner.score_tasks

    def spy(self: MetaLearner, support_x: torch.Tensor, support_y: torch.Tensor, *args, **kw):
        seen.append((support_x.cpu(), support_y.cpu()))
        return score_tasks(self, support_x, support_y, *args, **kw)

    monkeypatch.setattr(MetaLearner, "score_tasks", spy)
    return seen


def test_shots_gives_k_support_examples_per_class_and_is_recorded(
    omniglot_run: Path,
    supports: list[tuple[torch.Tensor, torch.Tensor]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(["eval", str(omniglot_run), "--shots", "5", *SMALL_EVAL], capsys)
    assert code == 0, err
    assert out.startswith("3-way 5-shot (trained 1-shot): accuracy "), out
    assert supports, "the learner was never scored"
    for _, labels in supports:
        per_class = torch.stack([torch.bincount(task, minlength=3) for task in labels])
        assert (per_class == 5).all(), per_class
    record = json.loads((omniglot_run / "eval.json").read_text())
    assert record["ways"] == 3 and record["shots"] == 5
    assert record["overrides"] == {"shots": {"trained": 1, "tested": 5}}
    assert len(record["task_accuracies"]) == 4 and 0 <= record["accuracy"] <= 1
    assert load_config(omniglot_run).shots == 1  # the run itself is left as it was


def test_without_overrides_the_run_is_tested_as_trained(
    omniglot_run: Path,
    supports: list[tuple[torch.Tensor, torch.Tensor]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(["eval", str(omniglot_run), "--ways", "3", *SMALL_EVAL], capsys)
    assert code == 0, err
    assert out.startswith("accuracy "), out  # nothing differs from training: no setting shown
    assert all((torch.bincount(task, minlength=3) == 1).all() for _, y in supports for task in y)
    record = json.loads((omniglot_run / "eval.json").read_text())
    assert record["overrides"] == {} and record["shots"] == 1 and record["inner_lr"] == 0.1


def test_inner_lr_changes_the_adaptation_of_the_same_tasks(omniglot_run: Path) -> None:
    settings = {"tasks": 4, "meta_batch": 2, "queries": 2}
    trained = eval_run(omniglot_run, EvalConfig(**settings), progress=False)
    trained_tasks = json.loads((omniglot_run / "eval.json").read_text())["test_tasks_sha256"]
    faster = eval_run(omniglot_run, EvalConfig(**settings, inner_lr=2.0), progress=False)
    record = json.loads((omniglot_run / "eval.json").read_text())
    assert record["test_tasks_sha256"] == trained_tasks
    assert record["inner_lr"] == 2.0
    assert record["overrides"] == {"inner_lr": {"trained": 0.1, "tested": 2.0}}
    # the same initial weights score the same before adaptation; the step itself differs
    torch.testing.assert_close(faster.per_step_loss[0], trained.per_step_loss[0])
    assert abs(faster.per_step_loss[1] - trained.per_step_loss[1]) > 1e-4


def test_other_ways_are_refused_naming_the_classifier(
    omniglot_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (omniglot_run / "eval.json").unlink(missing_ok=True)
    code, _, err = run_cli(["eval", str(omniglot_run), "--ways", "2", *SMALL_EVAL], capsys)
    assert code == 2
    assert "--ways 2: this run's model has a 3-way classifier" in err
    assert "leave --ways unset, or train a 2-way run" in err
    assert len(err.strip().splitlines()) == 1
    assert not (omniglot_run / "eval.json").exists()


def test_regression_takes_shots_and_refuses_ways(
    sinusoid_run: Path,
    supports: list[tuple[torch.Tensor, torch.Tensor]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert load_config(sinusoid_run).model == "mlp"  # the dataset's default model, recorded
    code, out, err = run_cli(["eval", str(sinusoid_run), "--shots", "12", *SMALL_EVAL], capsys)
    assert code == 0, err
    assert out.startswith("12-shot regression (trained 5-shot): MSE "), out
    assert supports and all(x.shape[1] == 12 for x, _ in supports)
    record = json.loads((sinusoid_run / "eval.json").read_text())
    assert record["shots"] == 12 and "ways" not in record and record["mse"] >= 0
    code, _, err = run_cli(["eval", str(sinusoid_run), "--ways", "5", *SMALL_EVAL], capsys)
    assert code == 2 and "sinusoid is a regression dataset" in err and "--shots" in err


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_inner_lr_is_refused_exactly_where_the_rates_are_learned(name: str) -> None:
    run = TrainConfig(algorithm=name, inner_lr=0.4)
    if ALGORITHMS.get(name).learns_inner_rates:
        with pytest.raises(ConfigError, match=f"algorithm '{name}' learns its inner learning"):
            evaluated_config(run, EvalConfig(inner_lr=0.1))
    else:
        assert evaluated_config(run, EvalConfig(inner_lr=0.1)).inner_lr == 0.1
    assert evaluated_config(run, EvalConfig()).inner_lr == 0.4


def test_compare_tests_every_algorithm_on_its_training_tasks() -> None:
    quick = COMPARE_PRESETS.get("quick")
    with pytest.raises(ConfigError, match="eval_shots: compare tests every algorithm"):
        plan_algorithms(quick, ["maml"], eval_layers=[{"shots": 5}])
    with pytest.raises(SystemExit):  # no such flag: the test tasks are the training ones
        build_parser().parse_args(["compare", "--out", "x", "--eval-shots", "5"])
