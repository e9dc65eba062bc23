"""How time and memory per meta-iteration grow with inner steps, query set size and meta-batch.

One axis at a time around the ``peer`` workload of ``benchmarks/peers.py`` (Conv4-64, 5-way
1-shot, 15 queries per class, 5 inner steps, 8 tasks), for mamlkit and the plain ``torch.func``
loop, second and first order, each point in fresh processes (timing, then memory) as in
``peers.py``. Writes the figures as JSON and a plot.

    python benchmarks/sweep.py --out docs/performance            # sweep.json, sweep.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers

from mamlkit.training.telemetry import source_commit

BASE = {"tasks": 8, "queries": 15, "steps": 5}
AXES = {
    "steps": [1, 2, 5, 10],
    "queries": [1, 5, 15],
    "tasks": [4, 8, 16, 32],
}
LABELS = {"steps": "inner steps", "queries": "queries per class", "tasks": "tasks per meta-batch"}


def sweep(reps: int, device: str, impls: list[str], orders: list[str]) -> list[dict]:
    rows = []
    for axis, values in AXES.items():
        for value in values:
            spec = {**BASE, axis: value}
            workload = f"{spec['tasks']}x{spec['queries']}x{spec['steps']}"
            for order in orders:
                for impl in impls:
                    row = peers.measure(impl, workload, order, reps, device)
                    row.update(axis=axis, value=value, impl=impl, order=order, **spec)
                    rows.append(row)
                    seconds = row.get("seconds_per_iteration")
                    memory = row.get("peak_memory_bytes")
                    print(
                        f"{axis}={value:<3} {order:6s} {impl:8s} "
                        + (
                            f"{seconds:.3f} s/it  {memory / 2**20:.0f} MiB"
                            if seconds
                            else row["status"]
                        ),
                        flush=True,
                    )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(AXES), figsize=(4.2 * len(AXES), 7), constrained_layout=True)
    styles = {"mamlkit": "-", "plain": "--"}
    colours = {"second": "tab:blue", "first": "tab:orange"}
    for column, axis in enumerate(AXES):
        for impl in styles:
            for order in colours:
                points = [
                    r for r in rows
                    if r["axis"] == axis and r["impl"] == impl and r["order"] == order
                    and r["status"] == "ok"
                ]  # fmt: skip
                if not points:
                    continue
                x = [r["value"] for r in points]
                label = f"{impl}, {order} order"
                axes[0][column].plot(
                    x, [r["seconds_per_iteration"] for r in points], styles[impl],
                    color=colours[order], marker="o", label=label,
                )  # fmt: skip
                axes[1][column].plot(
                    x, [r["peak_memory_bytes"] / 2**20 for r in points], styles[impl],
                    color=colours[order], marker="o", label=label,
                )  # fmt: skip
        others = ", ".join(f"{k}={v}" for k, v in BASE.items() if k != axis)
        axes[0][column].set_title(f"{LABELS[axis]} ({others})", fontsize=9)
        axes[1][column].set_xlabel(LABELS[axis])
        for row in (0, 1):
            axes[row][column].set_xticks(AXES[axis])
            axes[row][column].grid(alpha=0.3)
    axes[0][0].set_ylabel("seconds per meta-iteration")
    axes[1][0].set_ylabel("peak resident memory, default allocator (MiB)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Conv4-64, 5-way 1-shot, one meta-iteration (median)", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="sweep-results", help="folder for sweep.json/.png")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--impls", default="mamlkit,plain")
    parser.add_argument("--orders", default="second,first")
    parser.add_argument("--replot", action="store_true", help="redraw the plot from sweep.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        rows = json.loads((out / "sweep.json").read_text())["rows"]
    else:
        import torch

        started = time.strftime("%Y-%m-%d")
        rows = sweep(args.reps, args.device, args.impls.split(","), args.orders.split(","))
        record = {
            "command": " ".join(["python", "benchmarks/sweep.py", *sys.argv[1:]]),
            "date": started,
            "cpu": peers._cpu_name(),
            "commit": source_commit(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "base": BASE,
            "rows": rows,
        }
        (out / "sweep.json").write_text(json.dumps(record, indent=2))
    plot(rows, out / "sweep.png")
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")


if __name__ == "__main__":
    main()
