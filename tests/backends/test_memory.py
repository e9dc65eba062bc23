"""Memory behaviour: first order keeps no graph through the inner loop; nothing grows over time.

The first test counts the bytes that the meta-loss's autograd graph holds (through
``saved_tensors_hooks``, which see every tensor saved for backward, custom kernels included);
the second watches a training process's resident memory over many iterations, with glibc
returning large blocks at once (``MALLOC_MMAP_THRESHOLD_``) so the figure follows live memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref

import pytest
import torch

from mamlkit import Conv4, MetaLearner


class _Held:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def graph_bytes(learner: MetaLearner, data: tuple[torch.Tensor, ...]) -> int:
    """Bytes of saved tensors still held by the graph of ``learner.meta_loss(*data)``."""
    held: weakref.WeakSet[_Held] = weakref.WeakSet()

    def pack(tensor: torch.Tensor) -> _Held:
        handle = _Held(tensor)
        held.add(handle)
        return handle

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda handle: handle.tensor):
        loss, _ = learner.meta_loss(*data)
    seen: dict[int, int] = {}
    for handle in list(held):
        storage = handle.tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    del loss
    return sum(seen.values())


def episode(tasks: int = 4, queries: int = 2) -> tuple[torch.Tensor, ...]:
    """``tasks`` 5-way 2-shot tasks with ``queries`` query examples per class."""
    g = torch.Generator().manual_seed(0)
    sx = torch.rand(tasks, 10, 1, 28, 28, generator=g)
    qx = torch.rand(tasks, 5 * queries, 1, 28, 28, generator=g)
    return (
        sx,
        torch.arange(5).repeat(2).repeat(tasks, 1),
        qx,
        torch.arange(5).repeat(queries).repeat(tasks, 1),
    )


@pytest.mark.parametrize("execution", ["loop", "batched"])
def test_first_order_keeps_no_graph_through_the_inner_loop(execution: str) -> None:
    held = {}
    for preset in ("fomaml", "maml"):
        for steps in (1, 4):
            torch.manual_seed(0)
            learner = MetaLearner(
                Conv4(1, 5, hidden=8), preset, inner_lr=0.1, inner_steps=steps, execution=execution
            )
            held[preset, steps] = graph_bytes(learner, episode())
    params = sum(p.numel() * 4 for p in Conv4(1, 5, hidden=8).parameters())
    # first order: four steps hold what one step holds, up to a few parameter-sized tensors
    assert abs(held["fomaml", 4] - held["fomaml", 1]) <= 8 * params
    # second order keeps every step's graph for the outer backward
    assert held["maml", 4] > 2 * held["maml", 1]


def peak_graph_bytes(run) -> int:
    """Largest total of saved-for-backward tensors alive at once while ``run()`` runs."""
    state = {"alive": 0, "peak": 0}

    def release(nbytes: int) -> None:
        state["alive"] -= nbytes

    def pack(tensor: torch.Tensor) -> _Held:
        handle = _Held(tensor)
        nbytes = tensor.numel() * tensor.element_size()
        state["alive"] += nbytes
        state["peak"] = max(state["peak"], state["alive"])
        weakref.finalize(handle, release, nbytes)
        return handle

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda handle: handle.tensor):
        run()
    return state["peak"]


def test_meta_backward_in_groups_bounds_the_graph_held_at_once() -> None:
    torch.manual_seed(0)
    learner = MetaLearner(Conv4(1, 5, hidden=8), "maml", inner_lr=0.1, inner_steps=2)
    data = episode(tasks=8)
    peaks = {
        group: peak_graph_bytes(lambda g=group: learner.meta_backward(*data, tasks_per_backward=g))
        for group in (None, 2)
    }
    assert peaks[2] < 0.4 * peaks[None]


def test_meta_backward_frees_each_query_set_before_the_next() -> None:
    """Large query sets scored task by task are differentiated at once, so the graph held at
    the peak is the inner loops' plus one task's query pass, not every task's query pass."""
    torch.manual_seed(0)
    learner = MetaLearner(Conv4(1, 5, hidden=8), "maml", inner_lr=0.1, inner_steps=1)
    data = episode(tasks=8, queries=15)
    training = peak_graph_bytes(lambda: learner.meta_backward(*data))
    learner.zero_grad()
    whole = peak_graph_bytes(lambda: learner.meta_loss(*data)[0].backward())
    assert training < 0.5 * whole  # measured: 0.30


@pytest.mark.parametrize("preset", ["fomaml", "maml"])
def test_meta_backward_groups_tasks_by_default_on_cpu(preset: str) -> None:
    torch.manual_seed(0)
    learner = MetaLearner(Conv4(1, 5, hidden=8), preset, inner_lr=0.1, inner_steps=1)
    data = episode(tasks=32, queries=1)
    peaks = {
        group: peak_graph_bytes(lambda g=group: learner.meta_backward(*data, tasks_per_backward=g))
        for group in (None, 32)
    }
    assert peaks[None] < 0.7 * peaks[32]  # measured: 0.50 first order, 0.25 second


def test_loop_strategy_backpropagates_one_task_at_a_time_by_default() -> None:
    torch.manual_seed(0)
    learner = MetaLearner(
        Conv4(1, 5, hidden=8), "maml", inner_lr=0.1, inner_steps=2, execution="loop"
    )
    data = episode(tasks=8, queries=2)
    peaks = {
        group: peak_graph_bytes(lambda g=group: learner.meta_backward(*data, tasks_per_backward=g))
        for group in (None, 1, 8)
    }
    assert peaks[None] == peaks[1]
    assert peaks[None] < 0.3 * peaks[8]  # measured: 0.15


def test_loop_strategy_frees_each_query_set_before_the_next() -> None:
    torch.manual_seed(0)
    learner = MetaLearner(
        Conv4(1, 5, hidden=8), "fomaml", inner_lr=0.1, inner_steps=1, execution="loop"
    )
    data = episode(tasks=8, queries=15)
    one_backward = peak_graph_bytes(lambda: learner.meta_backward(*data, tasks_per_backward=8))
    learner.zero_grad()
    whole = peak_graph_bytes(lambda: learner.meta_loss(*data)[0].backward())
    assert one_backward < 0.4 * whole  # measured: 0.13


def test_multi_step_loss_scores_one_step_at_a_time() -> None:
    """With a query loss after every inner step (MAML++), the query passes of the steps are
    differentiated one after another, so the graph held at the peak is about what a loss after
    the last step alone holds, not one query pass per step."""
    data = episode(tasks=2, queries=15)
    peaks = {}
    for name, anneal in {"last": 0, "every": 100}.items():
        torch.manual_seed(0)
        learner = MetaLearner(
            Conv4(1, 5, hidden=8),
            "mamlpp",
            inner_lr=0.1,
            inner_steps=4,
            msl_anneal_iterations=anneal,
        )
        assert (learner.step_weights(0) > 0).sum() == (1 if name == "last" else 4)
        peaks[name] = peak_graph_bytes(lambda run=learner: run.meta_backward(*data, iteration=0))
    assert peaks["every"] < 1.2 * peaks["last"]  # measured: 1.00 (2.0 scored together)


GROWTH_SCRIPT = """
import json, sys, torch
from mamlkit import Conv4, MetaLearner, fit
from mamlkit.training.telemetry import current_rss_bytes
torch.manual_seed(0)
preset, execution = sys.argv[1], sys.argv[2]
learner = MetaLearner(Conv4(1, 5, hidden=16), preset, inner_lr=0.1, inner_steps=2,
                      execution=execution)
g = torch.Generator().manual_seed(0)
def batch():
    sx, qx = torch.rand(4, 5, 1, 28, 28, generator=g), torch.rand(4, 10, 1, 28, 28, generator=g)
    return sx, torch.arange(5).repeat(4, 1), qx, torch.arange(5).repeat(2).repeat(4, 1)
batches = [batch() for _ in range(80)]
rss = []
fit(learner, batches, torch.optim.Adam(learner.parameters(), 1e-3), progress=False,
    callbacks=[lambda record: rss.append(current_rss_bytes())])
print(json.dumps(rss))
"""


@pytest.mark.parametrize(("preset", "execution"), [("maml", "batched"), ("fomaml", "loop")])
def test_memory_does_not_grow_across_iterations(preset: str, execution: str) -> None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", GROWTH_SCRIPT, preset, execution],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rss = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(rss) == 80
    growth = max(rss[20:]) - rss[19]
    assert growth < 4 * 2**20, (
        f"resident memory grew by {growth / 2**20:.1f} MiB over 60 iterations"
    )
