"""Time one meta-iteration of mamlkit and of the libraries people use today, like for like.

Every (implementation, workload, order) runs in its own fresh process, one after the other, on
identical synthetic batches and the same Conv4-64 model (BatchNorm with batch statistics): inner
SGD steps of 0.4 and an Adam outer step. Two processes per row:

* timing, ``--runs`` times (3): ``--warmup`` untimed iterations (3: the allocator's first
  rounds of page faults take up to 1.5x longer here), then the median seconds of ``--reps``
  iterations; a row reports the median of its runs' medians and their spread (min-max);
* memory, twice, over a warm-up and one iteration, as the peak resident memory above the level
  after set-up: with glibc's default allocator (what a user sees), and with glibc returning
  every block of 64 KiB or more at once (``MALLOC_MMAP_THRESHOLD_=65536``, "allocator-tuned"),
  which follows live tensors rather than the allocator's cache but makes allocation slower.
  On CUDA: ``torch.cuda.max_memory_allocated``.

Rows: ``mamlkit`` as shipped; ``mamlkit-lean`` backpropagates one task at a time
(``tasks_per_backward=1``, as learn2learn, higher and TorchOpt do), trading speed for memory;
``mamlkit-group-N`` backpropagates N tasks at a time (``tasks_per_backward=N``);
``mamlkit-loop`` is mamlkit's reference strategy (``execution="loop"``); ``mamlkit-mamlpp`` is
MAML++'s multi-step loss and LSLR at iteration 0 (``MAMLPP_MEASURED``; multi-step loss over all
steps), ``-annealed`` after its annealing.

"x fastest peer" divides tasks/s by the fastest of the peers measured in the same run (the plain
``torch.func`` loop in its two usual forms: ``plain`` sums the meta-batch's query losses and
backpropagates once, ``plain-per-task`` backpropagates each task before the next;
``torch.func.vmap``, learn2learn, higher, TorchOpt); a peer that is not installed is listed as
such. "% of ceiling" is the FLOPs of the plain loop's iteration (the same
work for every row) over time, against the measured throughput of one conv layer's forward and
backward at the layer-2 shape.

    python benchmarks/peers.py                          # both workloads, both orders, all peers
    python benchmarks/peers.py --reps 3 --impls mamlkit,plain --workloads peer
    python benchmarks/peers.py --json out.json --markdown out.md

Peers: ``pip install -e '.[bench]'`` brings higher and TorchOpt; learn2learn needs a manual build
(docs/performance.md). Run nothing else on the machine meanwhile: two processes each spinning two
threads on two cores slow both by 10-100x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
PEERS = ("plain", "plain-per-task", "vmap", "learn2learn", "higher", "torchopt")
#: The MAML++ that the published figures measure: multi-step loss and LSLR, second order from
#: the first iteration (no derivative-order annealing, which would make iteration 0 first order)
#: and BatchNorm weights shared by the steps, as the ``mamlpp`` preset was when they were taken.
MAMLPP_MEASURED = "mamlpp[derivative_annealing=false,bn_per_step_weights=false]"
MAMLKIT = ("mamlkit", "mamlkit-lean", "mamlkit-loop", "mamlkit-mamlpp", "mamlkit-mamlpp-annealed")
IMPLS = MAMLKIT + PEERS
WAYS, SHOTS, LR = 5, 1, 0.4
#: The targets: tasks/s over the fastest peer; peak memory (default allocator) over each plain
#: loop's; MAML++ during its multi-step-loss annealing over MAML's time.
TARGET_SPEEDUP, MEMORY_LIMIT, MAMLPP_LIMIT = 2.0, 1.0, 1.3
PLAIN_LOOPS = ("plain", "plain-per-task")


# ----------------------------------------------------------------------------- workers
def workload_spec(workload: str) -> dict[str, int]:
    """A named workload, or ``TASKSxQUERIESxSTEPS`` (e.g. ``8x15x5``) for the sweep."""
    if workload in WORKLOADS:
        return WORKLOADS[workload]
    try:
        tasks, queries, steps = (int(v) for v in workload.split("x"))
    except ValueError:
        raise SystemExit(
            f"unknown workload {workload!r}: {', '.join(WORKLOADS)} or TxQxS"
        ) from None
    return {"tasks": tasks, "queries": queries, "steps": steps}


def _setup(workload: str, device: str) -> tuple[Any, ...]:
    import torch

    from mamlkit import Conv4

    spec = workload_spec(workload)
    torch.manual_seed(0)
    model = Conv4(in_channels=1, num_classes=WAYS).to(device)
    g = torch.Generator().manual_seed(1)
    b, q = spec["tasks"], spec["queries"]
    sx = torch.rand(b, WAYS * SHOTS, 1, 28, 28, generator=g).to(device)
    qx = torch.rand(b, WAYS * q, 1, 28, 28, generator=g).to(device)
    sy = torch.arange(WAYS).repeat_interleave(SHOTS).repeat(b, 1).to(device)
    qy = torch.arange(WAYS).repeat_interleave(q).repeat(b, 1).to(device)
    return model, (sx, sy, qx, qy), spec["steps"]


def _mamlkit_step(impl: str, model: Any, data: tuple, steps: int, first_order: bool) -> Any:
    import torch

    from mamlkit import MetaLearner

    iteration, tasks_per_backward = 0, None
    if impl == "mamlkit-lean":  # backpropagate one task at a time, as the peers do
        tasks_per_backward = 1
    if impl.startswith("mamlkit-group-"):
        tasks_per_backward = int(impl.removeprefix("mamlkit-group-"))
        impl = "mamlkit"
    if impl.startswith("mamlkit-mamlpp") or impl == "mamlkit-loop-mamlpp":
        if first_order:
            return None
        preset = MAMLPP_MEASURED
        execution = "loop" if impl == "mamlkit-loop-mamlpp" else "auto"
        if impl.endswith("annealed"):  # past the multi-step-loss annealing: last step only
            iteration = 10**9
    else:
        preset = "fomaml" if first_order else "maml"
        execution = "loop" if impl == "mamlkit-loop" else "auto"
    learner = MetaLearner(
        model,
        preset,
        inner_lr=LR,
        inner_steps=steps,
        execution=execution,
        tasks_per_backward=tasks_per_backward,
    )
    opt = torch.optim.Adam(learner.parameters(), 1e-3)

    def step() -> None:
        opt.zero_grad()
        learner.meta_backward(*data, iteration=iteration)
        opt.step()

    return step


def _step_fn(impl: str, model: Any, data: tuple, steps: int, first_order: bool) -> Any:
    """A closure doing one full meta-iteration (inner loops, outer backward, Adam step)."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    if impl.startswith("mamlkit"):
        return _mamlkit_step(impl, model, data, steps, first_order)
    sx, sy, qx, qy = data
    tasks = sx.shape[0]
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    if impl in ("plain", "plain-per-task"):

        def adapted_query_loss(b: int, theta: dict) -> Any:
            params = theta
            for _ in range(steps):
                loss = F.cross_entropy(functional_call(model, params, (sx[b],)), sy[b])
                grads = torch.autograd.grad(
                    loss, list(params.values()), create_graph=not first_order
                )
                params = {k: v - LR * g for (k, v), g in zip(params.items(), grads, strict=True)}
            return F.cross_entropy(functional_call(model, params, (qx[b],)), qy[b]) / tasks

        def step() -> None:
            opt.zero_grad()
            theta = dict(model.named_parameters())
            if impl == "plain-per-task":  # each task's graph freed before the next is built
                for b in range(tasks):
                    adapted_query_loss(b, theta).backward()
            else:  # the meta-batch's summed loss, one backward
                sum(adapted_query_loss(b, theta) for b in range(tasks)).backward()
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


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker(
    impl: str, workload: str, order: str, reps: int, device: str, warmup: int = 3
) -> dict[str, Any]:
    """Time ``reps`` iterations after ``warmup`` ones (``reps == 0``: peak memory instead)."""
    import torch

    from mamlkit.training.telemetry import PeakMemory

    model, data, steps = _setup(workload, device)
    try:
        step = _step_fn(impl, model, data, steps, order == "first")
    except ImportError as error:
        return {"status": f"not installed ({error.name or error})"}
    if step is None:
        return {"status": "no such mode"}
    if reps == 0:
        with PeakMemory(device) as peak:  # the warm-up allocates what later iterations reuse
            step()
            step()
        return {"status": "ok", "peak_memory_bytes": peak.bytes, "memory_method": peak.method}
    for _ in range(warmup):  # allocator, kernels, tracing: not timed
        step()
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "status": "ok",
        "seconds_per_iteration": median,
        "seconds_all": times,
        "tasks_per_second": data[0].shape[0] / median,
        "threads": torch.get_num_threads(),
    }


def count_flops(workload: str, order: str, device: str, impl: str = "plain") -> int:
    """FLOPs of one meta-iteration (of the plain loop by default, or of ``impl``):
    convolutions and matmuls, every backward included.

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
    step = _step_fn(impl, model, data, steps, order == "first")
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
        _sync(device)
        start = time.perf_counter()
        F.conv2d(x, w, padding=1).sum().backward()
        _sync(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


# ----------------------------------------------------------------------------- driver
def _run_worker(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"failed: {last}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(
    impl: str, workload: str, order: str, reps: int, device: str, warmup: int = 3, runs: int = 1
) -> dict[str, Any]:
    """Timing in ``runs`` fresh processes, peak memory in one more (two on CPU: with the default
    allocator and allocator-tuned)."""
    timings = [_run_worker([impl, workload, order, str(reps), device, str(warmup)])]
    if timings[0]["status"] != "ok":
        return timings[0]
    timings += [
        _run_worker([impl, workload, order, str(reps), device, str(warmup)])
        for _ in range(runs - 1)
    ]
    failed = [t for t in timings if t["status"] != "ok"]
    if failed:
        return failed[0]
    medians = [t["seconds_per_iteration"] for t in timings]
    median = statistics.median(medians)
    row = {
        "status": "ok",
        "seconds_per_iteration": median,
        "seconds_run_medians": medians,
        "seconds_all": [s for t in timings for s in t["seconds_all"]],
        "tasks_per_second": timings[0]["tasks_per_second"]
        * timings[0]["seconds_per_iteration"]
        / median,
        "threads": timings[0]["threads"],
    }
    memory = _run_worker([impl, workload, order, "0", device])
    row["peak_memory_bytes"] = memory.get("peak_memory_bytes")
    row["memory_method"] = memory.get("memory_method", memory["status"])
    if device == "cpu":
        tuned = _run_worker([impl, workload, order, "0", device], TUNED_ALLOCATOR)
        row["peak_memory_tuned_bytes"] = tuned.get("peak_memory_bytes")
    return row


#: glibc returning every block of 64 KiB or more to the system at once: the resident memory then
#: follows live tensors (the "allocator-tuned" column), at the price of slower allocation.
TUNED_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def allocator_label() -> str:
    """How the "peak memory" column was allocated: glibc's defaults unless this process runs
    with ``MALLOC_*`` settings (which every worker inherits)."""
    settings = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_"))
    return "default allocator" if not settings else "allocator " + " ".join(settings)


def _mib(nbytes: int | None) -> str:
    return "not measured" if nbytes is None else f"{nbytes / 2**20:.0f} MiB"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summarise(rows: list[dict[str, Any]]) -> list[str]:
    """Derived ratios per (workload, order) and whether the targets hold."""
    lines = []
    keys = sorted({(r["workload"], r["order"]) for r in rows}, key=lambda k: (k[0] != "peer", k))
    for workload, order in keys:
        group = {r["impl"]: r for r in rows if (r["workload"], r["order"]) == (workload, order)}
        ok = {k: r for k, r in group.items() if r["status"] == "ok"}
        peers = {k: r for k, r in ok.items() if k in PEERS}
        if "mamlkit" in ok and peers:
            best = max(peers, key=lambda k: peers[k]["tasks_per_second"])
            speedup = ok["mamlkit"]["tasks_per_second"] / peers[best]["tasks_per_second"]
            verdict = "meets" if speedup >= TARGET_SPEEDUP else "MISSES"
            lines.append(
                f"- {workload}, {order} order: mamlkit {speedup:.2f}x the fastest peer ({best}); "
                f"{verdict} the {TARGET_SPEEDUP}x target."
            )
        mine = ok.get("mamlkit", {}).get("peak_memory_bytes")
        allocator = allocator_label()
        for loop in PLAIN_LOOPS:
            plain = ok.get(loop, {}).get("peak_memory_bytes")
            if plain and mine:
                ratio = mine / plain
                verdict = "within" if ratio <= MEMORY_LIMIT else "OVER"
                lines.append(
                    f"- {workload}, {order} order: mamlkit peak memory ({allocator}) "
                    f"{ratio:.2f}x the {loop} loop's; {verdict} the {MEMORY_LIMIT}x limit."
                )
        for variant in ("mamlkit-mamlpp", "mamlkit-mamlpp-annealed"):
            if variant in ok and "mamlkit" in ok:
                seconds = ok[variant]["seconds_per_iteration"]
                ratio = seconds / ok["mamlkit"]["seconds_per_iteration"]
                when = "after" if variant.endswith("annealed") else "during"
                verdict = "within" if ratio <= MAMLPP_LIMIT else "OVER"
                lines.append(
                    f"- {workload}: MAML++ {when} multi-step-loss annealing costs {ratio:.2f}x "
                    f"MAML's time; {verdict} the {MAMLPP_LIMIT}x limit."
                )
    return lines


#: Presets whose FLOPs ``--count-flops`` counts; the order comes from ``--orders`` (``maml`` at
#: first order is FOMAML; MAML++ is counted at second order only).
FLOP_IMPLS = {"maml": "mamlkit-loop", "mamlpp": "mamlkit-loop-mamlpp"}


def print_flops(args: argparse.Namespace) -> None:
    """A table of GFLOPs per meta-iteration per preset, with the ratio to the first preset."""
    presets = args.count_flops.split(",")
    unknown = [p for p in presets if p not in FLOP_IMPLS]
    if unknown:
        raise SystemExit(f"--count-flops: unknown preset(s) {unknown}; known: {list(FLOP_IMPLS)}")
    print("| workload | order | " + " | ".join(f"{p} GFLOP" for p in presets) + " | ratio |")
    print("|---|---|" + "---|" * (len(presets) + 1))
    for workload in args.workloads.split(","):
        for order in args.orders.split(","):
            counts = []
            for preset in presets:
                if order == "first" and preset == "mamlpp":
                    counts.append(None)
                    continue
                worker = ["flops", workload, order, args.device, FLOP_IMPLS[preset]]
                counts.append(_run_worker(worker)["flops"])
            cells = " | ".join("" if c is None else f"{c / 1e9:.1f}" for c in counts)
            ratio = f"{counts[-1] / counts[0]:.2f}x" if counts[0] and counts[-1] else "n/a"
            print(f"| {workload} | {order} | {cells} | {ratio} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="mamlkit vs peers: meta-iteration speed")
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--orders", default="second,first")
    parser.add_argument("--reps", type=int, default=10, help="timed iterations per process")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument(
        "--runs", type=int, default=3, help="timing processes per row (median and spread)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--markdown", default=None, help="also write the tables here")
    parser.add_argument(
        "--count-flops",
        metavar="PRESETS",
        help="only count the FLOPs of one iteration of these presets (e.g. maml,mamlpp) on the "
        "reference path (execution='loop', so no kernel changes the count) and print them",
    )
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind = args.worker[0]
        if kind == "ceiling":
            print(json.dumps({"gflops": conv_ceiling(args.worker[1])}))
        elif kind == "flops":
            print(json.dumps({"flops": count_flops(*args.worker[1:5])}))
        else:
            impl, workload, order, reps, device, *warmup = args.worker
            print(json.dumps(worker(impl, workload, order, int(reps), device, *map(int, warmup))))
        return
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.count_flops:
        print_flops(args)
        return

    import torch

    import mamlkit
    from mamlkit.training.telemetry import source_commit

    ceiling = _run_worker(["ceiling", args.device]).get("gflops")
    results: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/peers.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device,
        "cpu": _cpu_name(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "mamlkit": mamlkit.__version__,
        "commit": source_commit(),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "allocator": allocator_label(),
        "ceiling_gflops": ceiling,
        "reps": args.reps,
        "runs": args.runs,
        "warmup": args.warmup,
        "rows": [],
    }
    out: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    emit(
        f"Measured {results['date']} on {results['cpu']} ({os.cpu_count()} cores, "
        f"{args.device}), mamlkit commit {results['commit']}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; conv ceiling "
        f"{ceiling:.0f} GFLOP/s; per row {args.runs} processes, each the median of {args.reps} "
        f"iterations after {args.warmup} untimed; median of the runs (spread: min-max).\n"
    )
    for workload in args.workloads.split(","):
        spec = workload_spec(workload)
        emit(
            f"Workload `{workload}`: {spec['tasks']} tasks, 5-way 1-shot, {spec['queries']} "
            f"queries per class, {spec['steps']} inner steps\n"
        )
        emit(
            "| implementation | order | tasks/s | median s/iter | spread s/iter | x fastest peer "
            f"| peak memory ({allocator_label()}) | allocator-tuned | % of ceiling |"
        )
        emit("|---|---|---|---|---|---|---|---|---|")
        for order in args.orders.split(","):
            flops = _run_worker(["flops", workload, order, args.device]).get("flops")
            group = []
            for impl in args.impls.split(","):
                row = measure(impl, workload, order, args.reps, args.device, args.warmup, args.runs)
                row.update(impl=impl, workload=workload, order=order, flops=flops)
                results["rows"].append(row)
                group.append(row)
            peer_speeds = [
                r["tasks_per_second"] for r in group if r["impl"] in PEERS and r["status"] == "ok"
            ]
            fastest = max(peer_speeds, default=None)
            for row in group:
                if row["status"] != "ok":
                    emit(f"| {row['impl']} | {order} | {row['status']} | | | | | | |")
                    continue
                seconds = row["seconds_per_iteration"]
                share = flops / seconds / 1e9 / ceiling if flops and ceiling else None
                memory = _mib(row.get("peak_memory_bytes"))
                tuned = _mib(row.get("peak_memory_tuned_bytes"))
                runs = row["seconds_run_medians"]
                spread = f"{min(runs):.3f}-{max(runs):.3f}"
                ratio = f"{row['tasks_per_second'] / fastest:.2f}" if fastest else "no peer"
                share_text = "not measured" if share is None else f"{100 * share:.0f}%"
                emit(
                    f"| {row['impl']} | {order} | {row['tasks_per_second']:.2f} | {seconds:.3f} "
                    f"| {spread} | {ratio} | {memory} | {tuned} | {share_text} |"
                )
        emit()
    for line in summarise(results["rows"]):
        emit(line)
    results["summary"] = summarise(results["rows"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
