"""What each part of mamlkit's execution contributes: switch one off at a time and time it.

Each variant runs in a fresh process on the workloads of ``benchmarks/peers.py`` and reports the
median seconds per meta-iteration of ``MetaLearner.meta_backward`` (what training runs) and its
peak resident memory over the first two iterations (default allocator); ``slowdown`` is the
variant's time over the full engine's in the same run. Variants switch parts off by replacing
them with the plain PyTorch operation they stand for, so every variant computes the same
gradients.

    python benchmarks/ablation.py                     # all variants, both workloads and orders
    python benchmarks/ablation.py --variants full,no-bn-kernel --workloads peer --orders second
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers

from mamlkit.training.telemetry import source_commit

VARIANTS = {
    "full": "mamlkit as shipped (execution='auto')",
    "no-bn-kernel": "BatchNorm: PyTorch's double backward instead of the closed form",
    "no-pool-kernel": "max-pool: PyTorch's NCHW kernel instead of the channels-last one",
    "no-conv-bn-fold": "first conv + BatchNorm: separate ops instead of one folded matmul",
    "no-relu-after-pool": "ReLU before max-pool, as written in the model",
    "query-all-tasks": "query sets of all tasks in one batched call (no per-task chunks)",
    "query-graphs-kept": "every query pass's graph kept until the outer backward",
    "one-backward": "all tasks of the meta-batch in one backward (not 8 at a time)",
    "bn-kernel-everywhere": "the BatchNorm closed form also where no second derivative follows",
    "loop": "execution='loop': one functional_call per task (the reference path)",
    "one-thread": "full engine with torch.set_num_threads(1)",
    "plain": "the plain torch.func loop of peers.py (for scale)",
    "plain-compiled": "plain loop, task loss under torch.compile (first order only)",
}


def _apply(variant: str) -> None:
    """Switch one part of the engine off (in this worker process only)."""
    import torch
    import torch.nn.functional as F

    from mamlkit.backends import kernels
    from mamlkit.backends import program as batched

    if variant == "no-bn-kernel":
        kernels.batch_norm_train = lambda x, w, b, eps=1e-5: F.batch_norm(  # type: ignore[assignment]
            x, None, None, w, b, True, 0.0, eps
        )
    elif variant == "no-pool-kernel":
        kernels.max_pool2d = F.max_pool2d  # type: ignore[assignment]
    elif variant == "no-conv-bn-fold":
        batched._fusable_conv = lambda conv: False  # type: ignore[assignment]
    elif variant == "no-relu-after-pool":
        batched._monotone_activation = lambda node, modules: None  # type: ignore[assignment]
    elif variant == "one-thread":
        torch.set_num_threads(1)
    elif variant == "query-graphs-kept":
        from mamlkit.learner.meta_learner import MetaLearner

        query_loss = MetaLearner.query_loss

        def whole_query_graph(self: Any, *args: Any) -> Any:
            self._query_gradients_early = False
            return query_loss(self, *args)

        MetaLearner.query_loss = whole_query_graph  # type: ignore[method-assign]
    elif variant == "one-backward":
        from mamlkit.backends import chunking

        chunking.TASKS_PER_BACKWARD = 10**9
    elif variant == "bn-kernel-everywhere":
        kernels.second_derivative_expected = lambda: True  # type: ignore[assignment]


def _compiled_plain_step(model: Any, data: tuple, steps: int) -> Any:
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    sx, sy, qx, qy = data
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def task_loss(params: dict, x: Any, y: Any) -> Any:
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    compiled = torch.compile(task_loss, dynamic=False)

    def step() -> None:
        opt.zero_grad()
        theta = dict(model.named_parameters())
        total = 0.0
        for b in range(sx.shape[0]):
            params = theta
            for _ in range(steps):
                leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
                grads = torch.autograd.grad(compiled(leaves, sx[b], sy[b]), list(leaves.values()))
                params = {
                    k: v - peers.LR * g for (k, v), g in zip(params.items(), grads, strict=True)
                }
            total = total + compiled(params, qx[b], qy[b])
        (total / sx.shape[0]).backward()
        opt.step()

    return step


def worker(variant: str, workload: str, order: str, reps: int) -> dict[str, Any]:
    from mamlkit import MetaLearner
    from mamlkit.training.telemetry import PeakMemory

    _apply(variant)
    model, data, steps = peers._setup(workload, "cpu")
    first_order = order == "first"
    if variant in ("plain", "plain-compiled"):
        if variant == "plain-compiled":
            if not first_order:
                return {"status": "not run (torch.compile cannot double-backward)"}
            step = _compiled_plain_step(model, data, steps)
        else:
            step = peers._step_fn("plain", model, data, steps, first_order)
    else:
        import torch

        learner = MetaLearner(
            model,
            "fomaml" if first_order else "maml",
            inner_lr=peers.LR,
            inner_steps=steps,
            execution="loop" if variant == "loop" else "auto",
            query_chunk=data[0].shape[0] if variant == "query-all-tasks" else None,
        )
        opt = torch.optim.Adam(learner.parameters(), 1e-3)

        def step() -> None:
            opt.zero_grad()
            learner.meta_backward(*data)
            opt.step()

    with PeakMemory("cpu") as peak:
        start = time.perf_counter()
        step()  # warm-up (and compilation), not timed
        setup_seconds = time.perf_counter() - start
        step()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "status": "ok",
        "seconds_per_iteration": statistics.median(times),
        "warmup_seconds": setup_seconds,
        "peak_memory_bytes": peak.bytes,
        "memory_method": peak.method,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workloads", default=",".join(peers.WORKLOADS))
    parser.add_argument("--orders", default="second,first")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        variant, workload, order, reps = args.worker
        print(json.dumps(worker(variant, workload, order, int(reps))))
        return
    rows = []
    commit = source_commit()
    print(
        f"Measured {time.strftime('%Y-%m-%d')} on {peers._cpu_name()}, mamlkit commit {commit}; "
        f"median of {args.reps}.\n"
    )
    print("| variant | workload | order | median s/iter | slowdown vs full | peak memory |")
    print("|---|---|---|---|---|---|")
    for workload in args.workloads.split(","):
        for order in args.orders.split(","):
            full = None
            for variant in args.variants.split(","):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        variant,
                        workload,
                        order,
                        str(args.reps),
                    ],
                    capture_output=True,
                    text=True,
                )
                if out.returncode != 0:
                    row = {"status": "failed: " + (out.stderr.strip().splitlines() or ["?"])[-1]}
                else:
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                row.update(variant=variant, workload=workload, order=order)
                rows.append(row)
                if row["status"] != "ok":
                    print(f"| {variant} | {workload} | {order} | {row['status']} | | |", flush=True)
                    continue
                seconds = row["seconds_per_iteration"]
                if variant == "full":
                    full = seconds
                ratio = f"{seconds / full:.2f}x" if full else "n/a"
                memory = peers._mib(row.get("peak_memory_bytes"))
                print(
                    f"| {variant} | {workload} | {order} | {seconds:.3f} | {ratio} | {memory} |",
                    flush=True,
                )
    print()
    for name, text in VARIANTS.items():
        print(f"- `{name}`: {text}")
    if args.json:
        record = {
            "command": " ".join(["python", "benchmarks/ablation.py", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d"),
            "commit": commit,
            "cpu": peers._cpu_name(),
            "rows": rows,
            "variants": VARIANTS,
        }
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
