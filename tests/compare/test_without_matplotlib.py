"""matplotlib is optional (the ``plots`` extra): without it comparisons, reports and regression
evaluations write everything else and say in one line how to get the figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mamlkit.cli import main
from mamlkit.compare import write_report

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "comparison" / "quick" / "results.json"
NOTE = "plots skipped: matplotlib is not installed (pip install 'mamlkit[plots]' adds it)"


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import matplotlib`` (and of its modules) fails, as where it is not installed."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.fixture
def comparison(tmp_path: Path) -> Path:
    """A finished comparison's folder: its ``results.json`` alone."""
    shutil.copy(RESULTS, tmp_path / "results.json")
    return tmp_path


def test_report_without_matplotlib_is_written_and_says_how_to_get_plots(
    comparison: Path, no_matplotlib: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(comparison)]) == 0
    assert capsys.readouterr().out == f"wrote {comparison}/report.md; {NOTE}\n"
    report = (comparison / "report.md").read_text()
    assert "Plots skipped: matplotlib is not installed" in report
    assert "`mamlkit report DIR` draws them" in report and "![" not in report
    assert "| maml |" in report  # the comparison itself is all there
    assert not list(comparison.glob("*.png"))


def test_report_with_matplotlib_draws_and_links_the_plots(comparison: Path) -> None:
    pytest.importorskip("matplotlib")
    assert write_report(comparison) is None
    report = (comparison / "report.md").read_text()
    drawn = sorted(p.name for p in comparison.glob("*.png"))
    assert drawn and all(f"]({name})" in report for name in drawn)
    assert "Plots skipped" not in report


def test_regression_eval_without_matplotlib_skips_only_the_figure(
    tmp_path: Path, no_matplotlib: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    options = ["--dataset", "sinusoid", "--hidden", "4", "--shots", "3", "--queries", "3"]
    short = ["--meta-batch", "2", "--iterations", "1", "--device", "cpu", "--no-progress"]
    assert main(["train", *options, *short, "--out", str(run)]) == 0
    (run / "fits.png").write_bytes(b"an earlier evaluation's figure")
    capsys.readouterr()
    evaluation = ["--tasks", "4", "--meta-batch", "2", "--no-progress"]
    assert main(["eval", str(run), *evaluation]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("MSE ") and lines[1].startswith("per-step MSE ")
    assert lines[1].endswith(f"; {NOTE}")
    record = json.loads((run / "eval.json").read_text())
    assert record["fits"] == {"file": None, "skipped": NOTE} and record["mse"] >= 0
    assert not (run / "fits.png").exists()  # no stale figure beside the new results


def test_mamlkit_imports_without_matplotlib() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import mamlkit, mamlkit.cli, mamlkit.compare, mamlkit.training\n"
        "print(mamlkit.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
