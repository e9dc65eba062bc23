"""Small training runs: their configs, a Ctrl-C on cue, and reading and comparing run folders."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import torch

from mamlkit.io import load_tensors
from mamlkit.training import Callback
from mamlkit.training.checkpoints import CHECKPOINT_FILE
from mamlkit.training.config import TrainConfig
from mamlkit.training.run_folder import WEIGHTS_FILE

SINUSOID = {"dataset": "sinusoid", "model": "mlp", "hidden": 8, "shots": 5, "queries": 5}


def omniglot_run(root: Path) -> dict:
    return {
        "dataset": "omniglot", "data_root": str(root), "ways": 3, "shots": 1, "queries": 2,
        "hidden": 4,
    }  # fmt: skip


def config_of(base: dict, **changes: object) -> TrainConfig:
    values = {"meta_batch": 2, "iterations": 6, "checkpoint_every": 2, "progress": False}
    return TrainConfig(**{**values, **base, **changes})


def interrupt_at(iteration: int) -> Callback:
    """A callback that sends this process Ctrl-C after ``iteration``."""

    class Interrupt(Callback):
        def on_log(self, record: dict) -> None:
            if record["iteration"] == iteration:
                os.kill(os.getpid(), signal.SIGINT)

    return Interrupt()


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run / WEIGHTS_FILE)[0]


RUN_FILES = {"config.yaml", "metrics.jsonl", "model.safetensors", CHECKPOINT_FILE, "summary.json"}


def assert_same_run(one: Path, two: Path) -> None:
    """Two runs that differ only by float rounding in the averaging of gradients.

    A conv bias followed by BatchNorm (batch statistics) changes no output, so its meta-gradient
    is zero up to rounding, and Adam turns that rounding noise into steps of about the learning
    rate, differently in each run; those biases are left out of the comparison.
    """
    a, b = weights(one), weights(two)
    assert a.keys() == b.keys()
    for name in a:
        if re.fullmatch(r"model\.features\.block\d\.conv\.bias", name):
            continue
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    first, second = records(one), records(two)
    assert [r["iteration"] for r in second] == [r["iteration"] for r in first]
    torch.testing.assert_close(
        torch.tensor([r["loss"] for r in second]),
        torch.tensor([r["loss"] for r in first]),
        rtol=1e-5,
        atol=1e-6,
    )
