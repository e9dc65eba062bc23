"""The examples run (on a tiny setting), so they cannot rot."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def _worker(*args: str, env: dict[str, str] | None = None) -> dict:
    script = REPO / "benchmarks" / "peers.py"
    result = subprocess.run(
        [sys.executable, str(script), "--worker", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_peer_benchmark_worker_reports_timing_and_memory() -> None:
    timing = _worker("mamlkit", "paper", "first", "1", "cpu")
    assert timing["status"] == "ok" and timing["tasks_per_second"] > 0
    assert timing["seconds_per_iteration"] == timing["seconds_all"][0] > 0
    memory = _worker(
        "mamlkit", "paper", "first", "0", "cpu", env={"MALLOC_MMAP_THRESHOLD_": "65536"}
    )
    assert memory["status"] == "ok" and memory["peak_memory_bytes"] > 0
    status = _worker("learn2learn", "paper", "first", "1", "cpu")["status"]
    assert status == "ok" or status.startswith("not installed")
    assert _worker("torchopt", "paper", "first", "1", "cpu")["status"] in ("no such mode",)


def test_peer_benchmark_summary_checks_the_targets() -> None:
    spec = importlib.util.spec_from_file_location("peers", REPO / "benchmarks" / "peers.py")
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)

    def row(impl: str, tasks_per_second: float, memory: int) -> dict:
        return {
            "impl": impl, "workload": "peer", "order": "second", "status": "ok",
            "tasks_per_second": tasks_per_second, "seconds_per_iteration": 8 / tasks_per_second,
            "peak_memory_bytes": memory,
        }  # fmt: skip

    rows = [row("mamlkit", 12.0, 100), row("plain", 6.0, 90), row("higher", 7.0, 80)]
    rows.append(row("mamlkit-mamlpp", 10.0, 120))
    text = "\n".join(peers.summarise(rows))
    assert "mamlkit 1.71x the fastest peer (higher); meets the 1.5x target" in text
    assert "peak memory 1.11x the plain loop's; within" in text
    assert "MAML++ during multi-step-loss annealing costs 1.20x MAML's time; within" in text
    rows[0]["tasks_per_second"] = 9.0
    assert "1.29x the fastest peer (higher); MISSES" in "\n".join(peers.summarise(rows))
