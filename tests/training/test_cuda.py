"""Training, checkpoints and scale-out on CUDA (skipped where no CUDA device is present)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mamlkit.data import Omniglot
from mamlkit.training import eval_run, train_run
from mamlkit.training.config import EvalConfig, dump_yaml
from tests.helpers.torchrun import torchrun
from tests.helpers.training_runs import (
    RUN_FILES,
    assert_same_run,
    config_of,
    interrupt_at,
    omniglot_run,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("algorithm", ["maml", "mamlpp"])
def test_train_eval_and_resume_on_cuda(tmp_path: Path, omniglot_root: Path, algorithm: str) -> None:
    config = config_of(
        omniglot_run(omniglot_root), algorithm=algorithm, device="cuda", inner_steps=2,
        inner_lr=0.1, log_every=1,
    )  # fmt: skip
    summary = train_run(config, tmp_path / "straight")
    assert summary["device"].startswith("cuda")
    assert summary["peak_memory_method"] == "torch.cuda.max_memory_allocated"
    assert summary["peak_memory_bytes"] > 0
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "stopped", callbacks=[interrupt_at(3)])
    train_run(config, tmp_path / "stopped", resume=True)
    # cuDNN's convolution backward may sum in another order from run to run: close, not equal
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")
    result = eval_run(tmp_path / "straight", EvalConfig(tasks=10, queries=2, meta_batch=5))
    assert 0.0 <= result.accuracy <= 1.0 and result.tasks == 10


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_two_nccl_processes_equal_one_process(tmp_path: Path, omniglot_root: Path) -> None:
    Omniglot(omniglot_root, split="train")  # decode once, before the workers
    config = config_of(
        omniglot_run(omniglot_root), algorithm="mamlpp", device="cuda", meta_batch=4,
        iterations=4, inner_steps=2, inner_lr=0.1, log_every=1,
    )  # fmt: skip
    (tmp_path / "config.yaml").write_text(dump_yaml(config))
    train_run(config, tmp_path / "one")
    torchrun("--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "two"))
    assert {p.name for p in (tmp_path / "two").iterdir()} == RUN_FILES
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["device"] == "cuda:0"
    assert_same_run(tmp_path / "one", tmp_path / "two")
