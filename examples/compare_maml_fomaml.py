"""MAML vs first-order MAML through the Python API, on identical Omniglot tasks.

``mamlkit.compare`` trains each algorithm in a fresh process (so each one's time and peak memory
are its own) from the same initial weights on the same episode stream, and tests both on the
same test tasks. The script prints, for each: training time, peak memory, test accuracy with its
95% confidence interval, final training loss, improvement over chance and the spread of the
per-task test accuracy; then the ratios and whether the tasks and weights were identical. With
``--out DIR`` the comparison's ``results.json``, ``report.md`` and plots are kept in ``DIR``
(``mamlkit compare`` is the command-line form, with every algorithm and preset).

    python examples/compare_maml_fomaml.py --data-root ../shared/data --iterations 200
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from mamlkit.compare import ComparePreset, plan_algorithms, run_comparison
from mamlkit.compare.report import ratio_sentence

ALGORITHMS = ("maml", "fomaml")


def comparison(args: argparse.Namespace) -> ComparePreset:
    """MAML and FOMAML with the same Omniglot 5-way 1-shot settings (no accuracy curve during
    training: only the final test)."""
    return ComparePreset(
        name="maml-vs-fomaml",
        description="MAML and first-order MAML on identical Omniglot 5-way 1-shot tasks",
        algorithms=ALGORITHMS,
        train={
            "dataset": "omniglot",
            "data_root": args.data_root,
            "download": args.download,
            "ways": 5,
            "shots": 1,
            "queries": 1,
            "inner_steps": args.inner_steps,
            "inner_lr": 0.4,
            "meta_batch": args.meta_batch,
            "outer_lr": 0.003,
            "iterations": args.iterations,
            "hidden": args.hidden,
            "seed": 0,
        },
        evaluation={"tasks": args.eval_tasks, "queries": 15, "inner_steps": 3, "seed": 0},
        curve_points=0,
    )


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def figures(result: dict[str, Any]) -> dict[str, str]:
    """What is printed of one algorithm, from its result record (``results.json``'s
    ``algorithms``, as ``mamlkit.compare`` measured them)."""
    seconds = f"{result['train_seconds']:.1f} s ({result['seconds_per_iteration']:.3f} s/it)"
    memory = result["peak_memory_bytes"]
    accuracy = f"{_pct(result['test_accuracy'])} +- {_pct(result['test_ci95'])}"
    per_task = result["task_accuracies"]
    return {
        "training time": seconds,
        "peak memory": "not measured" if memory is None else f"{memory / 2**20:.0f} MiB",
        "test accuracy (95% CI)": accuracy,
        "final training loss": f"{result['final_train_loss']:.4f}",
        "improvement over chance": f"{100 * result['improvement_over_chance']:+.2f} points",
        "per-task accuracy std": _pct(result["test_std"]),
        "worst-decile tasks": _pct(result["test_worst_decile_accuracy"]),
        "per-task accuracy min/max": f"{_pct(min(per_task))} / {_pct(max(per_task))}",
    }


def print_table(algorithms: list[dict[str, Any]]) -> None:
    """One row per figure, one column per algorithm."""
    columns = [figures(a) for a in algorithms]
    width = max(len(label) for label in columns[0])
    print(f"{'':{width}s}" + "".join(f"  {a['name']:>22s}" for a in algorithms))
    for label in columns[0]:
        print(f"{label:{width}s}" + "".join(f"  {column[label]:>22s}" for column in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="folder holding omniglot/*.zip")
    parser.add_argument("--download", action="store_true", help="download Omniglot if missing")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--meta-batch", type=int, default=16)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64, help="filters per conv layer")
    parser.add_argument("--eval-tasks", type=int, default=200)
    parser.add_argument("--out", default=None, help="keep the results and report in this folder")
    args = parser.parse_args()

    preset = comparison(args)
    plans = plan_algorithms(preset)  # every setting checked before any training
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch) / "comparison"
        results = run_comparison(preset, plans, out, command="examples/compare_maml_fomaml.py")
    maml, fomaml = results["algorithms"]
    print(
        f"\nOmniglot 5-way 1-shot, {maml['iterations']} iterations of {args.meta_batch} tasks, "
        f"tested on {maml['test_tasks']} new tasks (chance {_pct(maml['chance'])}):"
    )
    print_table(results["algorithms"])
    print(ratio_sentence(maml, fomaml).replace("**", ""))
    same = [
        f"{what} {'yes' if maml[key] == fomaml[key] else 'NO'}"
        for what, key in (
            ("training tasks", "task_stream_sha256"),
            ("initial weights", "initial_weights_sha256"),
            ("test tasks", "test_tasks_sha256"),
        )
    ]
    print("identical " + ", ".join(same) + f"; peak memory: {maml['peak_memory_method']}")
    if args.out:
        print(f"results.json and report.md in {args.out}")


if __name__ == "__main__":
    main()
