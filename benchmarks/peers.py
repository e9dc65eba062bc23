"""Time one meta-iteration of mamlkit and of the libraries people use today, like for like.

Every (implementation, workload, order) runs in its own fresh process, one after the other, on
identical synthetic batches and the same Conv4-64 model (BatchNorm with batch statistics), and
reports the median seconds per meta-iteration, tasks per second and peak memory (resident memory
above the level after set-up, on CUDA ``max_memory_allocated``). A peer that is not installed is
reported as such. The FLOP ceiling is the measured throughput of one conv layer's forward and
backward at the layer-2 shape; "% of ceiling" = counted FLOPs per iteration / time / ceiling.

    python benchmarks/peers.py                      # both workloads, both orders, all peers
    python benchmarks/peers.py --reps 3 --impls mamlkit,plain --workloads peer

Peers: ``pip install -e '.[bench]'`` brings higher and TorchOpt; learn2learn needs a manual build
(see docs/performance.md). Do not run anything else on the machine while this runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

WORKLOADS = {
    # Conv4-64, 5-way 1-shot, 28x28 inputs
    "peer": {"tasks": 8, "queries": 15, "steps": 5},
    "paper": {"tasks": 32, "queries": 1, "steps": 1},
}
IMPLS = ("mamlkit", "plain", "vmap", "learn2learn", "higher", "torchopt", "mamlkit-mamlpp")
WAYS, SHOTS, LR = 5, 1, 0.4


# ----------------------------------------------------------------------------- workers
def _setup(workload: str, device: str) -> tuple[Any, ...]:
    import torch

    from mamlkit import Conv4

    spec = WORKLOADS[workload]
    torch.manual_seed(0)
    model = Conv4(in_channels=1, num_classes=WAYS).to(device)
    g = torch.Generator().manual_seed(1)
    b, q = spec["tasks"], spec["queries"]
    sx = torch.rand(b, WAYS * SHOTS, 1, 28, 28, generator=g).to(device)
    qx = torch.rand(b, WAYS * q, 1, 28, 28, generator=g).to(device)
    sy = torch.arange(WAYS).repeat_interleave(SHOTS).repeat(b, 1).to(device)
    qy = torch.arange(WAYS).repeat_interleave(q).repeat(b, 1).to(device)
    return model, (sx, sy, qx, qy), spec["steps"]


def _step_fn(impl: str, model: Any, data: tuple, steps: int, first_order: bool) -> Any:
    """A closure doing one full meta-iteration (inner loops, outer backward, Adam step)."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    sx, sy, qx, qy = data
    tasks = sx.shape[0]

    if impl.startswith("mamlkit"):
        from mamlkit import MetaLearner

        if impl == "mamlkit-mamlpp":
            if first_order:
                return None
            learner = MetaLearner(model, "mamlpp", inner_lr=LR, inner_steps=steps)
        else:
            learner = MetaLearner(
                model, "fomaml" if first_order else "maml", inner_lr=LR, inner_steps=steps
            )
        opt = torch.optim.Adam(learner.parameters(), 1e-3)

        def step() -> None:
            opt.zero_grad()
            loss, _ = learner.meta_loss(sx, sy, qx, qy, iteration=0)
            loss.backward()
            opt.step()

        return step

    opt = torch.optim.Adam(model.parameters(), 1e-3)

    if impl == "plain":

        def step() -> None:
            opt.zero_grad()
            total = 0.0
            theta = dict(model.named_parameters())
            for b in range(tasks):
                params = theta
                for _ in range(steps):
                    loss = F.cross_entropy(functional_call(model, params, (sx[b],)), sy[b])
                    grads = torch.autograd.grad(
                        loss, list(params.values()), create_graph=not first_order
                    )
                    params = {
                        k: v - LR * g for (k, v), g in zip(params.items(), grads, strict=True)
                    }
                total = total + F.cross_entropy(functional_call(model, params, (qx[b],)), qy[b])
            (total / tasks).backward()
            opt.step()

        return step

    if impl == "vmap":
        from torch.func import grad, vmap

        def task_loss(params: dict, x: Any, y: Any, xq: Any, yq: Any) -> Any:
            def support_loss(p: dict) -> Any:
                return F.cross_entropy(functional_call(model, p, (x,)), y)

            for _ in range(steps):
                g = grad(support_loss)(params)
                if first_order:
                    g = {k: v.detach() for k, v in g.items()}
                params = {k: v - LR * g[k] for k, v in params.items()}
            return F.cross_entropy(functional_call(model, params, (xq,)), yq)

        def step() -> None:
            opt.zero_grad()
            theta = dict(model.named_parameters())
            losses = vmap(task_loss, in_dims=(None, 0, 0, 0, 0), randomness="same")(
                theta, sx, sy, qx, qy
            )
            losses.mean().backward()
            opt.step()

        return step

    if impl == "learn2learn":
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(model, lr=LR, first_order=first_order)
        opt = torch.optim.Adam(maml.parameters(), 1e-3)

        def step() -> None:
            opt.zero_grad()
            for b in range(tasks):
                learner = maml.clone()
                for _ in range(steps):
                    learner.adapt(F.cross_entropy(learner(sx[b]), sy[b]))
                (F.cross_entropy(learner(qx[b]), qy[b]) / tasks).backward()
            opt.step()

        return step

    if impl == "higher":
        import higher

        inner = torch.optim.SGD(model.parameters(), lr=LR)

        def step() -> None:
            opt.zero_grad()
            for b in range(tasks):
                with higher.innerloop_ctx(
                    model, inner, copy_initial_weights=False, track_higher_grads=not first_order
                ) as (fmodel, diffopt):
                    for _ in range(steps):
                        diffopt.step(F.cross_entropy(fmodel(sx[b]), sy[b]))
                    query = F.cross_entropy(fmodel(qx[b]), qy[b]) / tasks
                    if first_order:  # FOMAML: the query gradient at the adapted weights
                        grads = torch.autograd.grad(query, list(fmodel.parameters()))
                        for p, g in zip(model.parameters(), grads, strict=True):
                            p.grad = g if p.grad is None else p.grad + g
                    else:
                        query.backward()
            opt.step()

        return step

    if impl == "torchopt":
        if first_order:
            return None  # TorchOpt's MetaSGD object API has no first-order switch
        import torchopt

        inner = torchopt.MetaSGD(model, lr=LR)

        def step() -> None:
            opt.zero_grad()
            for b in range(tasks):
                state = torchopt.extract_state_dict(model)
                for _ in range(steps):
                    inner.step(F.cross_entropy(model(sx[b]), sy[b]))
                (F.cross_entropy(model(qx[b]), qy[b]) / tasks).backward()
                torchopt.recover_state_dict(model, state)
            opt.step()

        return step

    raise ValueError(f"unknown implementation {impl!r}")


def worker(impl: str, workload: str, order: str, reps: int, device: str) -> dict[str, Any]:
    import torch

    from mamlkit.memory import PeakMemory

    model, data, steps = _setup(workload, device)
    try:
        step = _step_fn(impl, model, data, steps, order == "first")
    except ImportError as error:
        return {"status": f"not installed ({error.name or error})"}
    if step is None:
        return {"status": "no such mode"}
    times = []
    with PeakMemory(device) as peak:  # over the warm-up too: it allocates what later ones reuse
        step()  # warm-up (allocator, kernels), not timed
        for _ in range(reps):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "status": "ok",
        "seconds_per_iteration": median,
        "tasks_per_second": data[0].shape[0] / median,
        "peak_memory_bytes": peak.bytes,
        "threads": torch.get_num_threads(),
    }


def count_flops(workload: str, order: str, device: str) -> int:
    """FLOPs of one mamlkit meta-iteration: convolutions and matmuls, every backward included.

    Uses torch's per-op FLOP formulas (``torch.utils.flop_counter.flop_registry``) in a dispatch
    mode; ``FlopCounterMode`` itself cannot follow ``autograd.grad(create_graph=True)``.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            count = flop_registry.get(func._overloadpacket)
            if count is not None:
                Counter.total += count(*args, **kwargs, out_val=out)
            return out

    model, data, steps = _setup(workload, device)
    step = _step_fn("mamlkit", model, data, steps, order == "first")
    with Counter():
        step()
    return int(Counter.total)


def conv_ceiling(device: str, reps: int = 20) -> float:
    """Measured GFLOP/s of conv forward + backward at the Conv4 layer-2 shape (75x64x14x14)."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(75, 64, 14, 14, device=device, requires_grad=True)
    w = torch.randn(64, 64, 3, 3, device=device, requires_grad=True)
    flops = 3 * 2 * 75 * 64 * 64 * 9 * 14 * 14  # forward, grad input, grad weight
    times = []
    for i in range(reps + 3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        F.conv2d(x, w, padding=1).sum().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


# ----------------------------------------------------------------------------- driver
def _run_worker(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"failed: {last}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="mamlkit vs peers: meta-iteration speed")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--orders", default="second,first")
    parser.add_argument("--reps", type=int, default=5, help="timed iterations per process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind = args.worker[0]
        if kind == "ceiling":
            print(json.dumps({"gflops": conv_ceiling(args.worker[1])}))
        elif kind == "flops":
            print(json.dumps({"flops": count_flops(*args.worker[1:4])}))
        else:
            impl, workload, order, reps, device = args.worker
            print(json.dumps(worker(impl, workload, order, int(reps), device)))
        return

    import platform

    import torch

    ceiling = _run_worker(["ceiling", args.device]).get("gflops")
    results: dict[str, Any] = {
        "device": args.device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "ceiling_gflops": ceiling,
        "date": time.strftime("%Y-%m-%d"),
        "rows": [],
    }
    print(
        f"# mamlkit vs peers ({args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; conv ceiling {ceiling:.1f} GFLOP/s)\n"
    )
    for workload in args.workloads.split(","):
        spec = WORKLOADS[workload]
        print(
            f"## workload {workload}: {spec['tasks']} tasks, {spec['queries']} queries/class, "
            f"{spec['steps']} inner steps\n"
        )
        print("| implementation | order | tasks/s | median s/iter | peak memory | % of ceiling |")
        print("|---|---|---|---|---|---|")
        for order in args.orders.split(","):
            flops = _run_worker(["flops", workload, order, args.device]).get("flops")
            for impl in args.impls.split(","):
                row = _run_worker([impl, workload, order, str(args.reps), args.device])
                row.update(impl=impl, workload=workload, order=order, flops=flops)
                results["rows"].append(row)
                if row["status"] != "ok":
                    print(f"| {impl} | {order} | {row['status']} | | | |", flush=True)
                    continue
                share = flops / row["seconds_per_iteration"] / 1e9 / ceiling if flops else None
                memory = row["peak_memory_bytes"]
                memory_text = "not measured" if memory is None else f"{memory / 2**20:.0f} MiB"
                share_text = "not measured" if share is None else f"{100 * share:.0f}%"
                print(
                    f"| {impl} | {order} | {row['tasks_per_second']:.2f} | "
                    f"{row['seconds_per_iteration']:.3f} | {memory_text} | {share_text} |",
                    flush=True,
                )
        print()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
