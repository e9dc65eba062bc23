"""Run a comparison: each algorithm in a fresh process on the identical task stream, then report.

Layout of the output folder: ``results.json``, ``report.md``, ``*.png`` and one folder per
algorithm holding ``plan.json`` (what it was asked to do), ``run/`` (the run folder of
``mamlkit train``) and ``result.json`` (its measurements), which ``--resume`` reuses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mamlkit.compare.plots import write_plots
from mamlkit.compare.presets import ComparePreset
from mamlkit.compare.report import render_report
from mamlkit.errors import ConfigError
from mamlkit.io import atomic_write_json, atomic_write_text
from mamlkit.training.fits import plots_unavailable


class ComparisonFailed(ChildProcessError):
    """An algorithm's worker process failed; its own message was printed above."""


def _finished(folder: Path, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The saved result of an algorithm run with exactly ``plan``, or ``None``."""
    try:
        saved_plan = json.loads((folder / "plan.json").read_text())
        result = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if saved_plan != plan:
        raise ConfigError(
            f"{folder} was run with other settings; choose another --out, or delete that folder "
            "to rerun it with these settings"
        )
    return result


def _saved_command(out: Path) -> str | None:
    """The command that started the comparison in ``out`` (kept when it is resumed)."""
    try:
        return json.loads((out / "results.json").read_text())["config"]["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_comparison(
    preset: ComparePreset,
    plans: dict[str, dict[str, Any]],
    out: str | Path,
    *,
    resume: bool = False,
    command: str = "",
    log: Any = print,
) -> dict[str, Any]:
    """Train and evaluate each planned algorithm (a subprocess each); write results and report.

    ``plans`` comes from :func:`~mamlkit.compare.plan_algorithms`. Each algorithm runs in a fresh
    ``python -m mamlkit.compare.worker`` process, so none inherits another's memory or caches;
    a failure raises :class:`ComparisonFailed`. ``resume=True`` skips algorithms whose
    ``result.json`` matches their plan, and continues an interrupted one from its run's last
    checkpoint (its curve points so far are kept in ``curve.json``), so a comparison of hours
    survives a lost machine. ``log`` receives progress lines; ``command`` is recorded
    in ``results.json``. Returns the content of ``results.json``.

    Needs the Omniglot data and minutes of training, so the example is not run here:

    >>> from mamlkit.compare import COMPARE_PRESETS, plan_algorithms, run_comparison
    >>> quick = COMPARE_PRESETS.get("quick")
    >>> results = run_comparison(quick, plan_algorithms(quick), "compare-quick")  # doctest: +SKIP
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    started = [name for name in plans if (out / name / "plan.json").exists()]
    if (started or (out / "results.json").exists()) and not resume:
        raise ConfigError(
            f"{out} already holds a comparison; pass --resume to continue it (finished "
            "algorithms are skipped) or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for name, plan in plans.items():
        folder = out / name
        record = _finished(folder, plan) if resume else None
        if record is not None:
            log(f"{name}: already finished in {folder}, skipped (--resume)")
        else:
            # an algorithm interrupted mid-training continues from its run's checkpoint
            continuing = resume and (folder / "plan.json").is_file()
            if continuing:
                log(f"{name}: continuing its interrupted run in {folder / 'run'} (--resume)")
            folder.mkdir(exist_ok=True)
            atomic_write_json(folder / "plan.json", plan)
            (folder / "result.json").unlink(missing_ok=True)
            started_at = time.perf_counter()
            worker = [sys.executable, "-m", "mamlkit.compare.worker", str(folder)]
            code = subprocess.call([*worker, "--resume"] if continuing else worker)
            if code == 130:
                raise KeyboardInterrupt
            if code != 0:
                raise ComparisonFailed(
                    f"{name} failed (exit status {code}, message above); fix it and rerun "
                    "with --resume to keep the finished algorithms"
                )
            record = json.loads((folder / "result.json").read_text())
            record["process_seconds"] = time.perf_counter() - started_at
            atomic_write_json(folder / "result.json", record)
        records.append(record)
        log(finished_line(record))
    first_command = _saved_command(out) if resume else None
    results = {
        "environment": records[0]["environment"] if records else {},
        "config": {
            "preset": preset.name,
            "preset_description": preset.description,
            "command": first_command or command,
            "last_command": command,
            "algorithms": list(plans),
            "plans": plans,
        },
        "algorithms": records,
    }
    atomic_write_json(out / "results.json", results)
    write_report(out, results)
    return results


def write_report(out: str | Path, results: dict[str, Any] | None = None) -> str | None:
    """(Re)write ``report.md`` and the plots in ``out`` from ``results`` or its results.json.

    Without matplotlib (an optional dependency) ``report.md`` is written without the plots, says
    how to get them, and the same one-line note is returned; ``None`` when the plots were drawn.
    """
    out = Path(out)
    if results is None:
        path = out / "results.json"
        try:
            results = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no {path}; is {out} a folder written by mamlkit compare?"
            ) from None
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON ({error})") from None
    skipped = plots_unavailable()
    plots = write_plots(results, out) if skipped is None else {}
    atomic_write_text(out / "report.md", render_report(results, plots, skipped=skipped))
    return skipped


def finished_line(record: dict[str, Any]) -> str:
    """The one-line summary printed when an algorithm of a comparison has finished: its test
    accuracy with the 95% confidence half-width, training time and peak memory."""
    memory = record["peak_memory_bytes"]
    memory_text = f"{memory / 2**20:.0f} MiB" if memory is not None else "not measured"
    return (
        f"{record['name']}: test accuracy {100 * record['test_accuracy']:.2f}% "
        f"+- {100 * record['test_ci95']:.2f}%, {record['train_seconds']:.0f} s training "
        f"({record['seconds_per_iteration']:.3f} s/it), peak memory {memory_text}"
    )
