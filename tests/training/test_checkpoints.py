"""Checkpoints and resume: exact continuation, Ctrl-C, and checkpoints that do not fit."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch

from mamlkit import MetaLearner
from mamlkit.algorithms import resolve_algorithm
from mamlkit.cli import main
from mamlkit.io import load_tensors
from mamlkit.training import Callback, train_run
from mamlkit.training.build import algorithm_options
from mamlkit.training.checkpoints import CHECKPOINT_FILE
from mamlkit.training.config import TrainConfig, dump_yaml
from tests.helpers.training_runs import (
    SINUSOID,
    config_of,
    interrupt_at,
    omniglot_run,
    records,
    weights,
)


@pytest.mark.parametrize("algorithm", ["maml", "mamlpp"])
@pytest.mark.parametrize("data", ["sinusoid", "omniglot"])
def test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(
    tmp_path: Path, data: str, algorithm: str, request: pytest.FixtureRequest
) -> None:
    base = (
        SINUSOID if data == "sinusoid" else omniglot_run(request.getfixturevalue("omniglot_root"))
    )
    # mamlpp: learned per-step rates and BatchNorm weights, multi-step loss, cosine schedule
    config = config_of(base, algorithm=algorithm, inner_steps=2, inner_lr=0.1, log_every=1)
    assert_resume_is_exact(config, tmp_path)


def assert_resume_is_exact(config: TrainConfig, tmp_path: Path) -> None:
    """``config`` (6 iterations) interrupted after iteration 3 and resumed ends bit-identical to
    the run trained straight through: the same weights and the same logged losses."""
    straight = train_run(config, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt, match="interrupted after iteration 3 of 6"):
        train_run(config, tmp_path / "stopped", callbacks=[interrupt_at(3)])
    resumed = train_run(config, tmp_path / "stopped", resume=True)
    assert resumed["iterations"] == straight["iterations"] == 6
    assert resumed["resumed_from_iteration"] == 3
    assert resumed["initial_weights_sha256"] == straight["initial_weights_sha256"]
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "stopped")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
    lines, expected = (records(tmp_path / name) for name in ("stopped", "straight"))
    assert [r["iteration"] for r in lines] == list(range(1, 7))
    assert [r["loss"] for r in lines] == [r["loss"] for r in expected]


@pytest.mark.filterwarnings("ignore:mamlpp. derivative-order annealing")
@pytest.mark.parametrize(
    ("data", "first_order_iterations"), [("sinusoid", 0), ("omniglot", 0), ("sinusoid", 5)]
)
def test_a_resumed_second_order_mamlpp_run_ends_bit_identical(
    tmp_path: Path, data: str, first_order_iterations: int, request: pytest.FixtureRequest
) -> None:
    """Second-order MAML++ throughout (no derivative-order annealing), or second order from
    iteration 6, so that the switch from first order falls in the resumed part."""
    base = (
        SINUSOID if data == "sinusoid" else omniglot_run(request.getfixturevalue("omniglot_root"))
    )
    config = config_of(
        base, algorithm="mamlpp", first_order_iterations=first_order_iterations, inner_steps=2,
        inner_lr=0.1, log_every=1,
    )  # fmt: skip
    hooks = resolve_algorithm(config.algorithm).hooks(**algorithm_options(config))
    orders = [hooks.first_order_at(i) for i in range(config.iterations)]
    assert orders == [i < first_order_iterations for i in range(config.iterations)]
    assert_resume_is_exact(config, tmp_path)


def test_ctrl_c_writes_a_checkpoint_and_exits_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["train", "--dataset", "sinusoid", "--model", "mlp", "--hidden", "4", "--shots", "5",
            "--queries", "5", "--meta-batch", "2", "--iterations", "100000", "--no-progress",
            "--checkpoint-every", "100000", "--log-every", "1", "--out", str(run)]  # fmt: skip
    stop_waiting = threading.Event()

    def ctrl_c_once_training_runs() -> None:  # not on a timer: setup may be slow on a busy box
        while not stop_waiting.wait(0.05):
            log = run / "metrics.jsonl"
            if log.is_file() and log.read_text().count("\n") >= 2:
                os.kill(os.getpid(), signal.SIGINT)
                return

    sender = threading.Thread(target=ctrl_c_once_training_runs, daemon=True)
    sender.start()
    try:
        code = main(args)
    finally:
        stop_waiting.set()
        sender.join()
    err = capsys.readouterr().err
    assert code == 130
    assert f"checkpoint saved; continue with: mamlkit train --resume {run}" in err
    _, metadata = load_tensors(run / CHECKPOINT_FILE)
    done = int(metadata["iteration"])
    assert 0 < done < 100000  # the iteration it stopped after, not a periodic checkpoint


def test_a_ctrl_c_during_the_stop_vote_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranks vote on stopping with an all-reduce, which is where they wait; a Ctrl-C landing
    there must not be overwritten by the vote's result (training would run on). Here the signal
    arrives inside the vote of iteration 3: it must stop after iteration 4."""
    votes: list[bool] = []

    def vote_with_ctrl_c_inside(flag: bool, group: object, device: object) -> bool:
        votes.append(flag)
        if len(votes) == 3:
            signal.raise_signal(signal.SIGINT)  # the handler runs before this returns
        return flag  # the vote as counted before the signal came

    monkeypatch.setattr("mamlkit.training.callbacks.any_rank", vote_with_ctrl_c_inside)
    with pytest.raises(KeyboardInterrupt, match="interrupted after iteration 4 of 20"):
        train_run(config_of(SINUSOID, iterations=20, checkpoint_every=20), tmp_path / "run")
    assert votes == [False, False, False, True]
    _, metadata = load_tensors(tmp_path / "run" / CHECKPOINT_FILE)
    assert int(metadata["iteration"]) == 4


def test_resume_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train_run(config_of(SINUSOID, iterations=2), run)
    cases = [
        (["train", "--resume", str(run)], "already finished its 2 iterations"),
        (["train", "--resume", str(run), "--shots", "4"], "drop --shots"),
        (["train", "--resume", str(run), "--iterations", "1"], "already finished its 1 iter"),
        (["train", "--resume", str(tmp_path)], "has no config.yaml"),
        (["train", "--dataset", "sinusoid"], "give --out DIR"),
        (["train", "--dataset", "sinusoid", "--model", "mlp", "--out", str(run)],
         f"continue it with mamlkit train --resume {run}"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = config_of(SINUSOID, iterations=4, log_every=1)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, run, callbacks=[interrupt_at(1)])
    other = {**config.to_dict(), "hidden": 6}
    (run / "config.yaml").write_text(dump_yaml(TrainConfig(**other)))
    with pytest.raises(ValueError, match=r"shapes differ: model\.features\.block1\.linear\.weight"):
        train_run(TrainConfig(**other), run, resume=True)
    anil = config_of(SINUSOID, iterations=4, algorithm="anil", log_every=1)
    with pytest.raises(ValueError, match=r"with other settings \(algorithm, hidden\)"):
        train_run(anil, run, resume=True)
    (run / "config.yaml").write_text(dump_yaml(anil))
    with pytest.raises(ValueError, match="checkpoint of algorithm 'maml', but the run is"):
        train_run(anil, run, resume=True)
    data = (run / CHECKPOINT_FILE).read_bytes()
    (run / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        train_run(anil, run, resume=True)


def test_a_numerical_failure_names_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = config_of(SINUSOID, iterations=6, log_every=1)

    class ExplodeAfter(Callback):
        def on_train_start(self, learner: MetaLearner) -> None:
            self.learner = learner

        def on_log(self, record: dict) -> None:
            if record["iteration"] == 4:  # from iteration 5 on every inner step diverges
                self.learner.inner_update.initial_lr = 1e30

    with pytest.raises(
        FloatingPointError, match=r"iteration 5.*last good checkpoint \(iteration 4\)"
    ):
        train_run(config, run, callbacks=[ExplodeAfter()])
    _, metadata = load_tensors(run / CHECKPOINT_FILE)
    assert metadata["iteration"] == "4"


def test_resume_with_more_iterations_extends_a_finished_run_exactly(tmp_path: Path) -> None:
    """``mamlkit train --resume RUN --iterations N`` trains a finished run further; with a
    constant outer learning rate the result is the run that was asked for N iterations."""
    whole, extended = tmp_path / "whole", tmp_path / "extended"
    train_run(config_of(SINUSOID, iterations=6), whole)
    train_run(config_of(SINUSOID, iterations=4), extended)
    assert main(["train", "--resume", str(extended), "--iterations", "6", "--no-progress"]) == 0
    assert "iterations: 6" in (extended / "config.yaml").read_text()
    a, b = (
        load_tensors(whole / "model.safetensors")[0],
        load_tensors(extended / "model.safetensors")[0],
    )
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)
    assert json.loads((extended / "summary.json").read_text())["iterations"] == 6


def test_a_cosine_schedule_cannot_be_extended(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    train_run(config_of(SINUSOID, iterations=2, outer_lr_schedule="cosine"), run)
    assert main(["train", "--resume", str(run), "--iterations", "4"]) == 2
    assert "cosine outer-LR schedule annealed over its 2 iterations" in capsys.readouterr().err
