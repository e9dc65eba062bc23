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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mamlkit.compare.presets import ComparePreset
from mamlkit.config import ConfigError, EvalConfig, TrainConfig, build_config
from mamlkit.core.algorithms import resolve_algorithm
from mamlkit.io import atomic_write_json, atomic_write_text


class ComparisonFailed(ChildProcessError):
    """An algorithm's worker process failed; its own message was printed above."""


def require_classification(dataset: str) -> None:
    """Comparisons report accuracies: a regression dataset (``sinusoid``) is refused up front."""
    from mamlkit.runs import registered_task

    task = registered_task(dataset)
    if task != "classification":
        raise ConfigError(
            f"compare supports classification datasets only; {dataset!r} is a {task} dataset: "
            "train and evaluate it with mamlkit train and mamlkit eval"
        )


def plan_algorithms(
    preset: ComparePreset,
    algorithms: Sequence[str] | None = None,
    *,
    train_layers: Sequence[dict[str, Any]] = (),
    eval_layers: Sequence[dict[str, Any]] = (),
) -> dict[str, dict[str, Any]]:
    """The resolved plan (train config, eval config, curve settings) of every algorithm.

    Precedence, low to high: the preset's shared values, its per-algorithm values, then each of
    ``train_layers`` / ``eval_layers`` in order (config file, then command-line flags).
    ``algorithms`` defaults to the preset's. Every name and value is checked here, before any
    training starts; regression datasets are refused (comparisons report accuracies).

    >>> from mamlkit.compare import COMPARE_PRESETS, plan_algorithms
    >>> plans = plan_algorithms(
    ...     COMPARE_PRESETS.get("quick"), ["maml", "anil"], train_layers=[{"iterations": 50}]
    ... )
    >>> sorted(plans), sorted(plans["anil"])
    (['anil', 'maml'], ['curve_points', 'curve_tasks', 'evaluation', 'train'])
    >>> plans["anil"]["train"]["iterations"], plans["anil"]["evaluation"]["tasks"]
    (50, 400)
    """
    names = list(algorithms) if algorithms else list(preset.algorithms)
    if len(set(names)) != len(names):
        raise ConfigError(f"--algorithms lists a name twice: {','.join(names)}")
    plans: dict[str, dict[str, Any]] = {}
    for name in names:
        resolve_algorithm(name)  # unknown names and bad variants fail here, with "did you mean"
        train_values = [
            {k: v for k, v in layer.items() if k != "algorithm"} for layer in train_layers
        ]
        train = build_config(
            TrainConfig,
            {"log_every": 1},
            preset.train_values(name),
            *train_values,
            {"algorithm": name},
        )
        require_classification(train.dataset)
        evaluation = build_config(EvalConfig, preset.evaluation_values(name), *eval_layers)
        plans[name] = {
            "train": train.to_dict(),
            "evaluation": evaluation.to_dict(),
            "curve_points": preset.curve_points,
            "curve_tasks": preset.curve_tasks,
        }
    return plans


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

    ``plans`` comes from :func:`plan_algorithms`. Each algorithm runs in a fresh
    ``python -m mamlkit.compare.worker`` process, so none inherits another's memory or caches;
    a failure raises :class:`ComparisonFailed`. ``resume=True`` skips algorithms whose
    ``result.json`` matches their plan. ``log`` receives progress lines; ``command`` is recorded
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
            folder.mkdir(exist_ok=True)
            atomic_write_json(folder / "plan.json", plan)
            (folder / "result.json").unlink(missing_ok=True)
            started_at = time.perf_counter()
            code = subprocess.call([sys.executable, "-m", "mamlkit.compare.worker", str(folder)])
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


def write_report(out: str | Path, results: dict[str, Any] | None = None) -> None:
    """(Re)write ``report.md`` and the plots in ``out`` from ``results`` or its results.json."""
    from mamlkit.compare.plots import write_plots
    from mamlkit.compare.report import render_report

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
    plots = write_plots(results, out)
    atomic_write_text(out / "report.md", render_report(results, plots))


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
