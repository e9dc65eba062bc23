"""The command line on real Omniglot: train a few iterations, evaluate, and fail cleanly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mamlkit.cli import main
from mamlkit.io import load_tensors

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
    "3",
    "--hidden",
    "8",
    "--log-every",
    "2",
    "--device",
    "cpu",
    "--no-progress",
]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_run(omniglot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        [
            "train",
            "--algorithm",
            "mamlpp",
            "--inner-steps",
            "2",
            "--inner-lr",
            "0.1",
            "--data-root",
            str(omniglot_root),
            "--out",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    return out


def test_train_writes_a_complete_run_folder(trained_run: Path) -> None:
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["algorithm"] == "mamlpp" and config["ways"] == 3 and config["iterations"] == 3
    records = [
        json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["iteration"] for r in records] == [2, 3]
    assert all(0 <= r["accuracy"] <= 1 and r["loss"] > 0 for r in records)
    tensors, metadata = load_tensors(trained_run / "model.safetensors")
    assert metadata["algorithm"] == "mamlpp"
    assert "model.head.weight" in tensors
    lrs = [k for k in tensors if k.startswith("inner_update.rates.")]
    assert lrs and all(tensors[k].shape == (2,) for k in lrs)  # LSLR: one rate per step
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["iterations"] == 3 and summary["train_seconds"] > 0
    assert set(summary["learned_inner_lrs"]) == {
        k.removeprefix("inner_update.rates.").replace("-", ".") for k in lrs
    }


def test_eval_reports_accuracy_and_writes_eval_json(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        [
            "eval",
            str(trained_run),
            "--tasks",
            "6",
            "--queries",
            "3",
            "--meta-batch",
            "4",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0
    assert re.fullmatch(r"accuracy \d+\.\d\d% \+- \d+\.\d\d% \(6 tasks\); the final weights\n", out)
    result = json.loads((trained_run / "eval.json").read_text())
    assert result["tasks"] == 6 and len(result["task_accuracies"]) == 6
    assert 0 <= result["accuracy"] <= 1 and result["std"] >= 0
    assert result["ci95"] == pytest.approx(1.96 * result["std"] / 6**0.5)
    assert len(result["per_step_accuracy"]) == 3  # before adaptation, after step 1, after step 2


def test_eval_with_more_steps_than_lslr_learned_is_a_one_line_error(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["eval", str(trained_run), "--tasks", "2", "--inner-steps", "3", "--no-progress"], capsys
    )
    assert code == 2
    assert err.count("\n") == 1 and "exist for 2 inner steps" in err


def test_config_file_is_read_and_flags_override_it(
    omniglot_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"algorithm": "fomaml", "inner_lr": 0.2, "seed": 5}))
    out = tmp_path / "run"
    code, _, _ = run_cli(
        [
            "train",
            "--config",
            str(config),
            "--seed",
            "7",
            "--data-root",
            str(omniglot_root),
            "--out",
            str(out),
            *TINY,
        ],
        capsys,
    )
    assert code == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["algorithm"], saved["inner_lr"], saved["seed"]) == ("fomaml", 0.2, 7)
    code, _, err = run_cli(
        ["train", "--data-root", str(omniglot_root), "--out", str(out), *TINY], capsys
    )
    assert code == 2 and "already holds a run" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"inner_lrr": 0.1}, "unknown config key 'inner_lrr'; did you mean 'inner_lr'"),
        ({"download": "yes"}, "must be bool, got 'yes'"),
        ({"ways": 2.5}, "config key 'ways' must be int"),
        ({"meta_batch": 0}, "meta_batch must be >= 1"),
    ],
)
def test_bad_config_files_fail_with_the_key_named(
    content: dict, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(content))
    code, _, err = run_cli(["train", "--config", str(config), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ways", "5000"], "ways=5000 but the omniglot 'train' split has only 4800"),
        (["--shots", "10", "--queries", "15"], "20"),
        (["--algorithm", "mamlpq"], "did you mean 'mamlpp'"),
        (["--inner-lr", "-1"], "inner_lr must be a finite number > 0"),
        (["--iterations", "0"], "iterations must be >= 1"),
    ],
)
def test_bad_train_arguments_fail_in_one_line(
    args: list[str],
    message: str,
    omniglot_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = [
        "train",
        "--data-root",
        str(omniglot_root),
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    ]
    code, _, err = run_cli(base + args, capsys)
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_missing_data_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["train", "--data-root", str(tmp_path), "--out", str(tmp_path / "r"), "--no-progress"],
        capsys,
    )
    assert code == 2 and str(tmp_path / "omniglot") in err and "download" in err
