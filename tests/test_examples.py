"""The examples run (on a tiny setting), so they cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_compare_maml_fomaml_example_runs(omniglot_root: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "compare_maml_fomaml.py"),
            "--data-root",
            str(omniglot_root),
            "--iterations",
            "2",
            "--meta-batch",
            "2",
            "--hidden",
            "8",
            "--eval-tasks",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[1].startswith("maml ") and lines[2].startswith("fomaml ")
    assert "(4 tasks)" in lines[1] and "faster than maml" in lines[-1]


def test_peer_benchmark_worker_reports_a_timing() -> None:
    script = REPO / "benchmarks" / "peers.py"
    result = subprocess.run(
        [sys.executable, str(script), "--worker", "mamlkit", "paper", "first", "1", "cpu"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["status"] == "ok" and row["tasks_per_second"] > 0
    assert row["seconds_per_iteration"] > 0 and row["peak_memory_bytes"] > 0
    missing = subprocess.run(
        [sys.executable, str(script), "--worker", "learn2learn", "paper", "first", "1", "cpu"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    status = json.loads(missing.stdout.strip().splitlines()[-1])["status"]
    assert status == "ok" or status.startswith("not installed")
