"""Gradient checkpointing's trade-off: time and memory of second-order MAML on ResNet-12 with
and without it (``resnet12`` against ``resnet12[gradient_checkpointing=true]``).

The workload is mini-ImageNet shaped: synthetic 3x84x84 images, 5-way 1-shot, 15 queries per
class, 5 inner steps, a meta-batch of 2 tasks, inner SGD and an Adam outer step, on ResNet-12
with ``--hidden`` 16 (block widths 16-40-80-160, so it fits in about 2 GB and takes minutes on
a 2-core CPU; the standard ResNet-12 is ``--hidden 64``, about 16x the work and several times
the memory). Both models use the same execution strategy (``--execution``, default ``auto``:
the batched program, which checkpoints the same blocks as the model). Each model runs in fresh
processes, as in ``benchmarks/peers.py``:

* timing: after set-up (model, learner, data), ``--warmup`` untimed iterations, then the median
  seconds of ``--reps`` iterations; it also reports the peak RSS of all of them above the level
  after set-up with glibc's default allocator (what the process really holds, allocator cache
  included);
* memory: a warm-up and one iteration with glibc returning every block of 64 KiB or more to the
  system at once (``MALLOC_MMAP_THRESHOLD_=65536``), so the peak RSS above the level after set-up
  is the peak of live tensors.

Both through ``mamlkit.training.telemetry.PeakMemory`` (on CUDA both are
``torch.cuda.max_memory_allocated``).

    python benchmarks/checkpointing.py --out checkpointing.json
    python benchmarks/checkpointing.py --hidden 4 --image-size 32 --reps 1 --warmup 0   # smoke

Run nothing else on the machine meanwhile (see ``benchmarks/peers.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: The two models compared, by label.
MODELS = {"plain": "resnet12", "checkpointing": "resnet12[gradient_checkpointing=true]"}


def worker(settings: dict[str, Any]) -> dict[str, Any]:
    """Seconds per iteration of ``settings["model"]`` in this process and the peak memory over
    all iterations; with ``reps`` 0 only the peak memory of a warm-up and one iteration."""
    import torch

    from mamlkit import MetaLearner
    from mamlkit.models import parse_model
    from mamlkit.training.telemetry import PeakMemory

    device = settings["device"]
    ways, size, tasks = settings["ways"], settings["image_size"], settings["tasks"]
    shots, queries = settings["shots"], settings["queries"]
    torch.manual_seed(0)
    factory, options = parse_model(settings["model"])
    model = factory(
        in_channels=3, num_classes=ways, hidden=settings["hidden"], image_size=size, **options
    ).to(device)
    learner = MetaLearner(
        model,
        settings["algorithm"],
        inner_lr=0.01,
        inner_steps=settings["steps"],
        execution=settings["execution"],
    )
    optimiser = torch.optim.Adam(learner.parameters(), 1e-3)
    g = torch.Generator().manual_seed(1)
    data = (
        torch.rand(tasks, ways * shots, 3, size, size, generator=g).to(device),
        torch.arange(ways).repeat_interleave(shots).repeat(tasks, 1).to(device),
        torch.rand(tasks, ways * queries, 3, size, size, generator=g).to(device),
        torch.arange(ways).repeat_interleave(queries).repeat(tasks, 1).to(device),
    )

    def step() -> None:
        optimiser.zero_grad()
        learner.meta_backward(*data)
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if settings["reps"] == 0:  # memory: the warm-up allocates what later iterations reuse
        with PeakMemory(device) as peak:
            step()
            step()
        return {"peak_memory_bytes": peak.bytes, "memory_method": peak.method}
    times = []
    with PeakMemory(device) as rss:
        for _ in range(settings["warmup"]):
            step()
        for _ in range(settings["reps"]):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return {
        "model": settings["model"],
        "execution": learner.execution_strategy,
        "seconds_per_iteration": statistics.median(times),
        "seconds_all": times,
        "peak_rss_default_allocator_bytes": rss.bytes,
        "threads": torch.get_num_threads(),
    }


def run_worker(settings: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``worker(settings)`` in a fresh process (so its peak memory is its own)."""
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(settings)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"failed: {last}"}
    return {"status": "ok", **json.loads(out.stdout.strip().splitlines()[-1])}


def measure(settings: dict[str, Any]) -> dict[str, Any]:
    """Timing in one fresh process, peak memory in another (see the module docstring)."""
    row = run_worker(settings)
    if row["status"] == "ok":
        env = {"MALLOC_MMAP_THRESHOLD_": "65536"} if settings["device"] == "cpu" else {}
        memory = run_worker({**settings, "reps": 0}, env)
        row["peak_memory_bytes"] = memory.get("peak_memory_bytes")
        row["memory_method"] = memory.get("memory_method", memory["status"])
    return row


def _mib(value: int | None) -> str:
    return "not measured" if value is None else f"{value / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=16, help="ResNet-12's first block width")
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15, help="per class")
    parser.add_argument("--steps", type=int, default=5, help="inner steps")
    parser.add_argument("--tasks", type=int, default=2, help="meta-batch")
    parser.add_argument("--algorithm", default="maml", help="maml is second order")
    parser.add_argument("--execution", default="auto", choices=("auto", "loop", "batched"))
    parser.add_argument("--reps", type=int, default=5, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.reps < 1 or args.warmup < 0:
        parser.error("--reps must be at least 1 and --warmup at least 0")

    from mamlkit.io import atomic_write_json
    from mamlkit.training.telemetry import environment

    settings = {key: value for key, value in vars(args).items() if key not in ("out", "worker")}
    print(
        f"ResNet-12 (hidden {args.hidden}), {args.algorithm}, {args.tasks} tasks of "
        f"{args.ways}-way {args.shots}-shot, {args.queries} queries per class, "
        f"{args.image_size}x{args.image_size} images, {args.steps} inner steps; median of "
        f"{args.reps} iterations after {args.warmup} untimed, on {args.device}",
        flush=True,
    )
    rows = {}
    for label, model in MODELS.items():
        rows[label] = row = measure({**settings, "model": model})
        if row["status"] != "ok":
            print(f"{label:>13}: {row['status']}", flush=True)
            continue
        print(
            f"{label:>13}: {row['seconds_per_iteration']:.3f} s/iteration, peak memory "
            f"{_mib(row['peak_memory_bytes'])} (peak RSS with the default allocator "
            f"{_mib(row['peak_rss_default_allocator_bytes'])}; {row['execution']}, "
            f"{row['threads']} threads)",
            flush=True,
        )
    ratios = {}
    plain, checkpointed = rows["plain"], rows["checkpointing"]
    if plain["status"] == checkpointed["status"] == "ok":
        ratios["time"] = checkpointed["seconds_per_iteration"] / plain["seconds_per_iteration"]
        for key in ("peak_memory_bytes", "peak_rss_default_allocator_bytes"):
            if plain.get(key) and checkpointed.get(key) is not None:
                ratios[key.removesuffix("_bytes")] = checkpointed[key] / plain[key]
        print(
            "checkpointing / plain: "
            + ", ".join(f"{name.replace('_', ' ')} {r:.2f}x" for name, r in ratios.items()),
            flush=True,
        )
    if args.out:
        record = {
            "command": " ".join(["python", "benchmarks/checkpointing.py", *sys.argv[1:]]),
            "environment": environment(),
            "settings": settings,
            "rows": rows,
            "ratios": ratios,
        }
        atomic_write_json(args.out, record)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
