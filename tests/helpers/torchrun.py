"""``mamlkit train`` under torchrun: two processes on this machine."""

from __future__ import annotations

import os
import subprocess
import sys


def torchrun_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "mamlkit", "train", *args]  # fmt: skip


def torchrun_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        torchrun_command(*args),
        env=torchrun_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done
