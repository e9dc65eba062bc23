"""Scale-out with torchrun: 2 gloo processes give the single-process result, and only rank 0
writes; the errors that come before any process group is joined."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from mamlkit.cli import main
from mamlkit.data import Omniglot
from mamlkit.errors import ConfigError
from mamlkit.io import load_tensors
from mamlkit.training import train_run
from mamlkit.training.checkpoints import CHECKPOINT_FILE
from mamlkit.training.config import TrainConfig, dump_yaml
from mamlkit.training.distributed import ProcessGroup, shard
from tests.helpers.torchrun import torchrun, torchrun_command, torchrun_env
from tests.helpers.training_runs import (
    RUN_FILES,
    SINUSOID,
    assert_same_run,
    config_of,
    interrupt_at,
    omniglot_run,
    records,
)


@pytest.mark.parametrize("algorithm", ["maml", "mamlpp"])
def test_two_gloo_processes_equal_one_process(
    tmp_path: Path, omniglot_root: Path, algorithm: str
) -> None:
    Omniglot(omniglot_root, split="train")  # decode once, before the workers
    # mamlpp: learned per-step rates, per-step BatchNorm weights, multi-step loss, cosine schedule
    config = config_of(
        omniglot_run(omniglot_root), algorithm=algorithm, meta_batch=4, iterations=4,
        inner_steps=2, inner_lr=0.1, log_every=1, threads=1,
    )  # fmt: skip
    (tmp_path / "config.yaml").write_text(dump_yaml(config))
    single = train_run(config, tmp_path / "one")
    done = torchrun("--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "two"))
    assert done.stdout.count("trained ") == 1  # rank 0 reports
    assert {p.name for p in (tmp_path / "two").iterdir()} == RUN_FILES  # no stray files
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and single["processes"] == 1
    assert summary["task_stream_sha256"] == single["task_stream_sha256"]
    assert summary["initial_weights_sha256"] == single["initial_weights_sha256"]
    assert_same_run(tmp_path / "one", tmp_path / "two")


def test_two_gloo_processes_equal_one_process_for_second_order_mamlpp(tmp_path: Path) -> None:
    # no derivative-order annealing: every process differentiates through the inner loop in
    # every iteration, and the averaged second-order meta-gradients are the single process's
    config = config_of(
        SINUSOID, algorithm="mamlpp", first_order_iterations=0, meta_batch=4, iterations=4,
        inner_steps=2, inner_lr=0.1, log_every=1, threads=1,
    )  # fmt: skip
    (tmp_path / "config.yaml").write_text(dump_yaml(config))
    single = train_run(config, tmp_path / "one")
    torchrun("--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "two"))
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and single["processes"] == 1
    assert summary["task_stream_sha256"] == single["task_stream_sha256"]
    assert_same_run(tmp_path / "one", tmp_path / "two")


def test_a_single_process_checkpoint_resumes_under_torchrun(tmp_path: Path) -> None:
    config = config_of(SINUSOID, algorithm="mamlpp", meta_batch=4, inner_steps=2, log_every=1)
    train_run(config, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt, match="after iteration 3 of 6"):
        train_run(config, tmp_path / "stopped", callbacks=[interrupt_at(3)])
    torchrun("--resume", str(tmp_path / "stopped"))
    summary = json.loads((tmp_path / "stopped" / "summary.json").read_text())
    assert summary["resumed_from_iteration"] == 3 and summary["processes"] == 2
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


def test_ctrl_c_under_torchrun_stops_every_rank_after_one_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--dataset", "sinusoid", "--model", "mlp", "--hidden", "8", "--shots", "5",
            "--queries", "5", "--meta-batch", "2", "--iterations", "1000000", "--log-every", "1",
            "--checkpoint-every", "1000000", "--no-progress", "--out", str(run)]  # fmt: skip
    agent = subprocess.Popen(
        torchrun_command(*args),
        env=torchrun_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (run / "metrics.jsonl").is_file() or len(records(run)) < 3:
        assert agent.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    agent.send_signal(signal.SIGINT)  # torchrun forwards it to both workers
    output, _ = agent.communicate(timeout=120)
    stopped = output.count("checkpoint saved; continue with: mamlkit train --resume")
    assert stopped == 2, output[-3000:]  # both ranks stopped cleanly, not killed
    _, metadata = load_tensors(run / CHECKPOINT_FILE)
    assert int(metadata["iteration"]) == records(run)[-1]["iteration"] >= 3


def test_a_meta_batch_the_processes_do_not_divide_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["train", "--dataset", "sinusoid", "--model", "mlp", "--meta-batch", "5",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "mamlkit train: error: --meta-batch 5 cannot be split evenly over 2 processes; choose a "
        "multiple of 2 (e.g. 4 or 6)\n"
    )
    assert not (tmp_path / "run").exists()


def test_what_cannot_run_under_torchrun_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["eval", str(tmp_path)]) == 2
    assert "only mamlkit train runs under torchrun" in capsys.readouterr().err
    config = TrainConfig(algorithm="mamlpp[bn_per_step_stats=true]", meta_batch=4)
    with pytest.raises(ConfigError, match=r"bn_per_step_stats.*without torchrun"):
        train_run(config, tmp_path / "run")


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_the_shards_of_a_meta_batch_are_its_tasks_in_order(world_size: int) -> None:
    batch = tuple(torch.arange(8 * 3).reshape(8, 3) + offset for offset in (0, 100))
    shares = [next(shard([batch], ProcessGroup(rank, world_size))) for rank in range(world_size)]
    for whole, parts in zip(batch, zip(*shares, strict=True), strict=True):
        assert all(len(part) == 8 // world_size for part in parts)
        torch.testing.assert_close(torch.cat(parts), whole)
