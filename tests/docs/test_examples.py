"""The examples run (on a tiny setting), so they cannot rot."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_compare_maml_fomaml_example_prints_every_figure(omniglot_root: Path, tmp_path: Path):
    """Each promised figure of both algorithms is printed, and is the one in results.json."""
    out = tmp_path / "comparison"
    tiny = ["--iterations", "2", "--meta-batch", "2", "--hidden", "8", "--eval-tasks", "4"]
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "compare_maml_fomaml.py"),
            "--data-root",
            str(omniglot_root),
            *tiny,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    algorithms = json.loads((out / "results.json").read_text())["algorithms"]
    assert [a["name"] for a in algorithms] == ["maml", "fomaml"]
    assert "2 iterations of 2 tasks, tested on 4 new tasks (chance 20.00%)" in text
    rows = {}
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.rstrip())
        if len(cells) == 3:
            rows[cells[0]] = cells[1:]
    assert rows[""] == ["maml", "fomaml"]

    def pct(value: float) -> str:
        return f"{100 * value:.2f}%"

    for column, a in enumerate(algorithms):
        accuracies = a["task_accuracies"]
        assert len(accuracies) == a["test_tasks"] == 4
        expected = {
            "training time": f"{a['train_seconds']:.1f} s ({a['seconds_per_iteration']:.3f} s/it)",
            "peak memory": f"{a['peak_memory_bytes'] / 2**20:.0f} MiB",
            "test accuracy (95% CI)": f"{pct(a['test_accuracy'])} +- {pct(a['test_ci95'])}",
            "final training loss": f"{a['final_train_loss']:.4f}",
            "improvement over chance": f"{100 * (a['test_accuracy'] - 0.2):+.2f} points",
            "per-task accuracy std": pct(a["test_std"]),
            "worst-decile tasks": pct(a["test_worst_decile_accuracy"]),
            "per-task accuracy min/max": f"{pct(min(accuracies))} / {pct(max(accuracies))}",
        }
        for label, value in expected.items():
            assert rows[label][column] == value, label
    assert "fomaml is " in text and " than maml, and is " in text
    assert "identical training tasks yes, initial weights yes, test tasks yes" in text
    assert (out / "report.md").is_file()


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


def test_peer_benchmark_summary_checks_the_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    spec = importlib.util.spec_from_file_location("peers", REPO / "benchmarks" / "peers.py")
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)

    def row(impl: str, tasks_per_second: float, memory: int) -> dict:
        return {
            "impl": impl, "workload": "peer", "order": "second", "status": "ok",
            "tasks_per_second": tasks_per_second, "seconds_per_iteration": 8 / tasks_per_second,
            "peak_memory_bytes": memory,
        }  # fmt: skip

    rows = [row("mamlkit", 15.0, 100), row("plain", 6.0, 120), row("higher", 7.0, 80)]
    rows += [row("plain-per-task", 5.0, 90), row("mamlkit-mamlpp", 12.5, 120)]
    text = "\n".join(peers.summarise(rows))
    assert "mamlkit 2.14x the fastest peer (higher); meets the 2.0x target" in text
    assert "(default allocator) 0.83x the plain loop's; within the 1.0x limit" in text
    assert "(default allocator) 1.11x the plain-per-task loop's; OVER the 1.0x limit" in text
    assert "MAML++ during multi-step-loss annealing costs 1.20x MAML's time; within" in text
    rows[0]["tasks_per_second"] = 9.0
    assert "1.29x the fastest peer (higher); MISSES" in "\n".join(peers.summarise(rows))
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")  # the memory was not the default's
    text = "\n".join(peers.summarise(rows))
    assert "(allocator MALLOC_MMAP_THRESHOLD_=65536) 0.83x the plain loop's" in text
    assert "default allocator" not in text


def test_peer_benchmark_row_reports_the_spread_of_its_runs_and_both_memories() -> None:
    spec = importlib.util.spec_from_file_location("peers", REPO / "benchmarks" / "peers.py")
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)
    row = peers.measure("mamlkit-group-1", "paper", "first", 1, "cpu", warmup=0, runs=2)
    assert row["status"] == "ok", row
    assert len(row["seconds_run_medians"]) == 2 and len(row["seconds_all"]) == 2
    assert row["seconds_per_iteration"] == pytest.approx(
        sorted(row["seconds_run_medians"])[0] / 2 + sorted(row["seconds_run_medians"])[1] / 2
    )
    assert row["peak_memory_bytes"] > 0 and row["peak_memory_tuned_bytes"] > 0


def test_checkpointing_benchmark_writes_both_models_and_their_ratios(tmp_path: Path) -> None:
    out = tmp_path / "checkpointing.json"
    tiny = ["--hidden", "2", "--image-size", "16", "--queries", "1", "--steps", "1"]
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "checkpointing.py"), *tiny,
         "--reps", "1", "--warmup", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(out.read_text())
    assert {"commit", "date", "torch", "torch_threads"} <= set(record["environment"])
    assert record["settings"]["hidden"] == 2
    for label, model in [
        ("plain", "resnet12"),
        ("checkpointing", "resnet12[gradient_checkpointing=true]"),
    ]:
        row = record["rows"][label]
        assert row["status"] == "ok" and row["model"] == model and row["execution"] == "batched"
        assert row["seconds_per_iteration"] == row["seconds_all"][0] > 0
        assert row["peak_memory_bytes"] is not None and row["peak_memory_bytes"] >= 0
    rows = record["rows"]
    time_ratio = (
        rows["checkpointing"]["seconds_per_iteration"] / rows["plain"]["seconds_per_iteration"]
    )
    assert record["ratios"]["time"] == time_ratio
    assert "checkpointing / plain: time" in result.stdout


@pytest.mark.parametrize(
    ("variant", "order"),
    [
        ("full", "second"),
        ("query-graphs-kept", "second"),
        ("one-backward", "second"),
        ("bn-kernel-everywhere", "first"),
    ],
)
def test_ablation_variant_runs_training_path_and_reports_memory(variant: str, order: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ablation.py"), "--worker", variant, "paper",
         order, "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["status"] == "ok" and row["seconds_per_iteration"] > 0
    assert row["peak_memory_bytes"] > 0
