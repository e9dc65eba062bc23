"""One algorithm of a comparison, in its own process: train, evaluate, write ``result.json``.

Run as ``python -m mamlkit.compare.worker FOLDER``; ``FOLDER/plan.json`` holds the train config,
the eval config and the curve settings. A fresh process per algorithm keeps each one's time and
peak memory its own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from mamlkit.algorithms import resolve_algorithm
from mamlkit.compare.plan import require_classification
from mamlkit.errors import run_guarded
from mamlkit.io import atomic_write_json, load_tensors
from mamlkit.learner import MetaLearner
from mamlkit.training import (
    Callback,
    EvalConfig,
    TrainConfig,
    build_config,
    build_dataset,
    build_sampler,
    eval_run,
    evaluate,
    train_run,
)
from mamlkit.training.checkpoints import CHECKPOINT_FILE
from mamlkit.training.run_folder import EVAL_FILE, METRICS_FILE, SUMMARY_FILE
from mamlkit.training.validation import is_validation_record, learner_device

#: The curve points measured so far, kept beside ``plan.json`` so a resumed run keeps them.
CURVE_FILE = "curve.json"


class CurveEvaluation(Callback):
    """Evaluates on ``curve_tasks`` test tasks at the ``at`` iterations, or when the training
    time first reaches each of ``at_seconds`` (a time budget's curve): the accuracy-vs-time
    curve. Its time is not counted as training time. Test tasks of seed ``evaluation.seed + 1``,
    not the final test tasks."""

    def __init__(
        self,
        config: TrainConfig,
        evaluation: EvalConfig,
        at: set[int],
        curve_tasks: int,
        at_seconds: list[float] | None = None,
    ) -> None:
        self.config, self.evaluation, self.at, self.curve_tasks = (
            config,
            evaluation,
            at,
            curve_tasks,
        )
        self.at_seconds = sorted(at_seconds or [])
        self.points: list[dict[str, Any]] = []
        self.path: Path | None = None  # where the points are kept as they come (resume)
        wanted = at or self.at_seconds
        self.test_set = build_dataset(config, evaluation.split) if wanted else None
        self.learner: MetaLearner | None = None

    def on_train_start(self, learner: MetaLearner) -> None:
        """Remember the learner to evaluate."""
        self.learner = learner

    def on_log(self, record: dict[str, Any]) -> None:
        """At a curve iteration (or time): evaluate and keep the point."""
        due_by_time = bool(self.at_seconds) and record["train_seconds"] >= self.at_seconds[0]
        while self.at_seconds and record["train_seconds"] >= self.at_seconds[0]:
            self.at_seconds.pop(0)
        if (record["iteration"] not in self.at and not due_by_time) or self.learner is None:
            return
        sampler = build_sampler(
            self.config,
            self.test_set,
            queries=self.evaluation.queries,
            meta_batch=self.evaluation.meta_batch,
            seed=self.evaluation.seed + 1,  # not the final test tasks
        )
        result = evaluate(
            self.learner,
            sampler,
            tasks=self.curve_tasks,
            inner_steps=self.evaluation.inner_steps,
            device=learner_device(self.learner),
            progress=False,
        )
        self.points.append(
            {
                "iteration": record["iteration"],
                "train_seconds": record["train_seconds"],
                "test_accuracy": result.accuracy,
                "test_ci95": result.ci95,
            }
        )
        if self.path is not None:
            atomic_write_json(self.path, self.points)

    def keep_points_up_to(self, path: Path, iteration: int) -> None:
        """Keep the points in ``path`` as they come; when resuming at ``iteration``, start from
        those already measured up to it (the times still due are those after them)."""
        self.path = path
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            self.points = [p for p in saved if p["iteration"] <= iteration]
            done = max((p["train_seconds"] for p in self.points), default=-1.0)
            self.at_seconds = [t for t in self.at_seconds if t > done]


def _checkpoint_iteration(run_dir: Path) -> int:
    """The iteration of the run's checkpoint (0 without one)."""
    if not (run_dir / CHECKPOINT_FILE).is_file():
        return 0
    return int(load_tensors(run_dir / CHECKPOINT_FILE)[1].get("iteration", 0))


def _train(
    config: TrainConfig, run_dir: Path, curve: CurveEvaluation, folder: Path, resume: bool
) -> dict[str, Any]:
    """Train the algorithm's run, continuing it from its checkpoint when resuming (a run that
    had finished training is not trained again)."""
    done = _checkpoint_iteration(run_dir) if resume else 0
    curve.keep_points_up_to(folder / CURVE_FILE, done)
    if done and (run_dir / SUMMARY_FILE).is_file():
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        if summary.get("iterations") == done:
            return summary  # training had finished; the evaluation had not
    if done:
        return train_run(config, run_dir, resume=True, callbacks=[curve])
    (folder / CURVE_FILE).unlink(missing_ok=True)
    curve.points = []
    return train_run(config, run_dir, overwrite=True, callbacks=[curve])


def run_plan(folder: Path, resume: bool = False) -> dict[str, Any]:
    """Execute ``folder/plan.json`` and return (and write) the algorithm's result record;
    ``resume`` continues an interrupted run in ``folder/run`` from its checkpoint."""
    plan = json.loads((folder / "plan.json").read_text())
    config = build_config(TrainConfig, plan["train"])
    require_classification(config.dataset)
    evaluation = build_config(EvalConfig, plan["evaluation"])
    points, curve_tasks = int(plan["curve_points"]), int(plan["curve_tasks"])
    at: set[int] = set()
    at_seconds: list[float] = []
    if points > 0 and config.budget_minutes is not None:  # equal time: points by training time
        at_seconds = [60.0 * config.budget_minutes * (i + 1) / points for i in range(points)]
    elif points > 0:
        at = {round(config.iterations * (i + 1) / points) for i in range(points)}
    curve = CurveEvaluation(config, evaluation, at, curve_tasks, at_seconds)
    run_dir = folder / "run"
    summary = _train(config, run_dir, curve, folder, resume)
    started = time.perf_counter()
    result = eval_run(run_dir, evaluation, progress=config.progress)
    eval_seconds = time.perf_counter() - started
    eval_json = json.loads((run_dir / EVAL_FILE).read_text())
    logged = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    losses = [r for r in logged if not is_validation_record(r)]
    validation_curve = [r for r in logged if is_validation_record(r)]
    accuracies = sorted(result.task_accuracies)
    decile = accuracies[: max(1, len(accuracies) // 10)]
    chance = 1.0 / config.ways
    record = {
        "name": config.algorithm,
        "iterations": summary["iterations"],
        "stopped_early": summary.get("stopped_early"),
        "budget_minutes": config.budget_minutes,
        "weights_file": eval_json.get("weights_file"),
        "train_seconds": summary["train_seconds"],
        "seconds_per_iteration": summary["seconds_per_iteration"],
        "peak_memory_bytes": summary["peak_memory_bytes"],
        "peak_memory_method": summary["peak_memory_method"],
        "final_train_loss": summary["final_train_loss"],
        "test_accuracy": result.accuracy,
        "test_ci95": result.ci95,
        "test_std": result.std,
        "test_worst_decile_accuracy": sum(decile) / len(decile),
        "test_tasks": result.tasks,
        "test_inner_steps": result.inner_steps,
        "chance": chance,
        "improvement_over_chance": result.accuracy - chance,
        "per_step_test_accuracy": result.per_step_accuracy,
        "per_step_test_loss": result.per_step_loss,
        "task_accuracies": result.task_accuracies,
        "learned_inner_lrs": summary["learned_inner_lrs"]
        if resolve_algorithm(config.algorithm).learns_inner_rates
        else None,
        "train_curve": [
            {
                "iteration": r["iteration"],
                "loss": r["loss"],
                "accuracy": r["accuracy"],
                "train_seconds": r["train_seconds"],
            }
            for r in losses
        ],
        "test_curve": curve.points,
        "validation_curve": validation_curve,
        "eval_seconds": eval_seconds,
        "initial_weights_sha256": summary["initial_weights_sha256"],
        "task_stream_sha256": summary["task_stream_sha256"],
        "test_tasks_sha256": eval_json["test_tasks_sha256"],
        "config": config.to_dict(),
        "evaluation": evaluation.to_dict(),
        "environment": summary["environment"],
        "device": summary["device"],
        "execution": summary.get("execution"),
    }
    atomic_write_json(folder / "result.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m mamlkit.compare.worker FOLDER [--resume]``: run ``FOLDER/plan.json`` (see
    :func:`run_plan`);
    returns the exit status (errors are printed in one line, as by the ``mamlkit`` command)."""
    args = sys.argv[1:] if argv is None else argv
    resume = "--resume" in args
    args = [a for a in args if a != "--resume"]
    if len(args) != 1:
        print("usage: python -m mamlkit.compare.worker FOLDER [--resume]", file=sys.stderr)
        return 2
    return run_guarded("compare", lambda: (run_plan(Path(args[0]), resume), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
