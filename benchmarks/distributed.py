"""One process with T threads against P torchrun processes with T/P threads each, same run.

Both train the same config (Omniglot 5-way 1-shot, Conv4-64, 15 queries, meta-batch 32 by
default) from the same seed, one after the other, never at once; the figures are the median
seconds per iteration from each run's ``summary.json`` and their ratio. Run on an idle machine.

    python benchmarks/distributed.py --data-root ../shared/data --out /tmp/dist-bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def train(out: Path, processes: int, threads: int, args: argparse.Namespace) -> dict:
    options = ["--algorithm", args.algorithm, "--data-root", args.data_root, "--meta-batch",
               str(args.meta_batch), "--iterations", str(args.iterations), "--inner-steps",
               str(args.inner_steps), "--threads", str(threads), "--no-progress",
               "--checkpoint-every", str(args.iterations), "--log-every", "1",
               "--overwrite", "--out", str(out)]  # fmt: skip
    launcher = [sys.executable, "-m", "mamlkit"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={processes}", "-m", "mamlkit"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([*launcher, "train", *options], check=True, env=env)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--algorithm", default="maml")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads in all")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    if args.threads % args.processes:
        parser.error("--threads must be a multiple of --processes")
    single = train(args.out / "one", 1, args.threads, args)
    several = train(args.out / "several", args.processes, args.threads // args.processes, args)
    one, many = single["seconds_per_iteration"], several["seconds_per_iteration"]
    figures = {
        "algorithm": args.algorithm,
        "meta_batch": args.meta_batch,
        "iterations": args.iterations,
        "one_process": {"threads": args.threads, "seconds_per_iteration": one},
        "processes": {
            "processes": args.processes,
            "threads_each": args.threads // args.processes,
            "seconds_per_iteration": many,
        },
        "speedup": one / many,
        "environment": single["environment"],
    }
    (args.out / "distributed.json").write_text(json.dumps(figures, indent=2))
    print(
        f"{args.algorithm}, meta-batch {args.meta_batch}: 1 process x {args.threads} threads "
        f"{one:.3f} s/it; {args.processes} processes x {args.threads // args.processes} threads "
        f"{many:.3f} s/it; speedup {one / many:.2f}x (medians over {args.iterations} iterations)"
    )


if __name__ == "__main__":
    main()
