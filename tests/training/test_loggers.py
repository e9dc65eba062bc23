"""``--logger``: the records of ``metrics.jsonl`` also go to CSV tables and TensorBoard event files,
which are read back here and compared with ``metrics.jsonl``, also across a resume."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mamlkit.cli import main
from mamlkit.errors import ConfigError
from mamlkit.training import Callback, train_run
from mamlkit.training.config import TrainConfig, build_config
from mamlkit.training.validation import is_validation_record

from ..helpers.training_runs import SINUSOID, config_of, records

ALL = "jsonl,csv,tensorboard"
#: 6 iterations, every one logged, validated every 2 (8 tasks), checkpointed every 2.
VALIDATED = {**SINUSOID, "validation": True, "validation_tasks": 8, "eval_every": 2, "log_every": 1}


def csv_rows(path: Path) -> list[dict[str, float]]:
    """The rows of a CSV file, every value as a float."""
    with open(path, newline="", encoding="utf-8") as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


def as_floats(logged: list[dict]) -> list[dict[str, float]]:
    return [{key: float(value) for key, value in record.items()} for record in logged]


def assert_csv_holds(run: Path, logged: list[dict]) -> None:
    """metrics.csv holds the training records and validation.csv the validation records of
    ``logged`` (metrics.jsonl's), in order, value for value, with their keys as columns."""
    training = [r for r in logged if not is_validation_record(r)]
    validation = [r for r in logged if is_validation_record(r)]
    assert training and validation
    for name, expected in (("metrics.csv", training), ("validation.csv", validation)):
        with open(run / name, newline="", encoding="utf-8") as file:
            header = next(csv.reader(file))
        assert header == list(expected[0]), name
        assert csv_rows(run / name) == as_floats(expected), name


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's TensorBoard event files: tag -> [(step, value)]."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def assert_tensorboard_holds(run: Path, logged: list[dict]) -> None:
    """The event files hold every number of ``logged`` (metrics.jsonl's records) once, tagged
    train/KEY or validation/KEY (without val_), at step = iteration (float32 values)."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in logged:
        validation = is_validation_record(record)
        for key, value in record.items():
            if key != "iteration":
                tag = "validation/" + key.removeprefix("val_") if validation else "train/" + key
                expected.setdefault(tag, []).append((record["iteration"], float(value)))
    found = tensorboard_scalars(run)
    assert {"train/loss", "train/iteration_seconds", "validation/mse", "validation/ci95"} <= set(
        found
    )
    assert sorted(found) == sorted(expected)
    for tag, points in expected.items():
        assert [step for step, _ in found[tag]] == [step for step, _ in points], tag
        torch.testing.assert_close(
            torch.tensor([value for _, value in found[tag]]),
            torch.tensor([value for _, value in points]),
            msg=tag,
        )
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_mamlkit_train_logs_the_same_records_to_csv_and_tensorboard(tmp_path: Path) -> None:
    run = tmp_path / "run"
    tiny = "--dataset sinusoid --model mlp --hidden 8 --shots 5 --queries 5 --meta-batch 2"
    validated = "--validation --validation-tasks 8 --eval-every 2 --log-every 1 --iterations 6"
    argv = ["train", "--out", str(run), *tiny.split(), *validated.split(), "--no-progress"]
    assert main([*argv, "--logger", ALL]) == 0
    logged = records(run)
    assert [r["iteration"] for r in logged if not is_validation_record(r)] == list(range(1, 7))
    assert [r["iteration"] for r in logged if is_validation_record(r)] == [2, 4, 6]
    assert_csv_holds(run, logged)
    assert_tensorboard_holds(run, logged)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["logger"] == ALL


class Crash(Callback):
    """Fails after ``iteration`` was logged: a run that dies past its last checkpoint."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_log(self, record: dict) -> None:
        if record["iteration"] == self.iteration:
            raise RuntimeError("the machine went away")


def test_a_resumed_run_repeats_no_row_and_no_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = config_of(VALIDATED, logger=ALL)
    with pytest.raises(RuntimeError, match="went away"):
        train_run(config, run, callbacks=[Crash(5)])  # checkpoint at 4; 5 logged everywhere
    assert csv_rows(run / "metrics.csv")[-1]["iteration"] == 5
    assert tensorboard_scalars(run)["train/loss"][-1][0] == 5
    train_run(config, run, resume=True)  # redoes iteration 5
    logged = records(run)
    assert [r["iteration"] for r in logged if not is_validation_record(r)] == list(range(1, 7))
    assert_csv_holds(run, logged)
    assert_tensorboard_holds(run, logged)


def test_a_logger_added_on_resume_holds_the_whole_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="went away"):
        train_run(config_of(VALIDATED), run, callbacks=[Crash(3)])
    assert not (run / "metrics.csv").exists() and not (run / "tensorboard").exists()
    assert main(["train", "--resume", str(run), "--logger", ALL]) == 0
    logged = records(run)
    assert_csv_holds(run, logged)
    assert_tensorboard_holds(run, logged)


def test_overwrite_removes_the_csv_and_event_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_run(config_of(VALIDATED, iterations=2, logger=ALL), run)
    train_run(config_of(SINUSOID, iterations=2), run, overwrite=True)
    assert not (run / "metrics.csv").exists() and not (run / "validation.csv").exists()
    assert list((run / "tensorboard").glob("events.out.tfevents.*")) == []


def test_logger_names_are_checked_and_jsonl_is_always_kept() -> None:
    assert TrainConfig().logger == "jsonl"
    assert build_config(TrainConfig, {"logger": "tensorboard, csv"}).logger == ALL
    assert TrainConfig(logger="csv").logger == "jsonl,csv"  # metrics.jsonl is always written
    with pytest.raises(ConfigError, match=r"unknown logger 'wandb' \(loggers: jsonl, csv, "):
        build_config(TrainConfig, {"logger": "csv,wandb"})


def test_an_unknown_logger_on_the_command_line_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--out", str(tmp_path / "run"), "--logger", "jsonl,tensorbord"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "mamlkit train: error: unknown logger 'tensorbord'; did you mean 'tensorboard'? "
        "(loggers: jsonl, csv, tensorboard, comma-separated)"
    )
    assert not (tmp_path / "run").exists()


def test_tensorboard_without_its_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    config = config_of(SINUSOID, logger="tensorboard")  # a config may still name it (eval)
    with pytest.raises(ConfigError, match=r"pip install 'mamlkit\[tensorboard\]'"):
        train_run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before any work
