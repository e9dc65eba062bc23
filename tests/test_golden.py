"""Golden results: a restructuring of the code must not change a single bit of what it computes.

Recorded in ``tests/golden/`` from the code as it was before a change, and compared here:

* the float64 meta-gradient of every learnable tensor (model weights, learned inner rates,
  per-step tables) of every registered algorithm on a small Conv4 and a small MLP, from fixed
  seeds, through the learner's default execution path;
* the ``metrics.jsonl`` (losses and accuracies; the timings are not results) and the trained
  weights of fixed 5-iteration ``mamlkit train`` runs of ``maml`` and ``mamlpp`` on real Omniglot.

On the machine and torch version that recorded them every tensor must be bit-identical (SHA-256
of its bytes). Elsewhere the float rounding of another CPU may differ, so the per-tensor sums and
norms must then agree to a relative 1e-9 (float64) and the metrics to 1e-5 (float32 training).

An algorithm added later records its own entry: ``python tests/test_golden.py --record NAME``
(``--record all`` rewrites every entry, which is only right when a change is meant to alter
results).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from mamlkit import ALGORITHMS, Conv4, MetaLearner
from mamlkit.io import load_tensors
from mamlkit.models import MLP

GOLDEN = Path(__file__).resolve().parent / "golden"
GRADIENTS_FILE = GOLDEN / "meta_gradients.json"
RUNS_FILE = GOLDEN / "cli_runs.json"
MODELS = ("conv4", "mlp")
CLI_ALGORITHMS = ("maml", "mamlpp")
TIMING_KEYS = ("iteration_seconds", "train_seconds")
WAYS, SHOTS, QUERIES, TASKS = 3, 2, 3, 2


def environment() -> dict[str, Any]:
    """What exact equality depends on: the torch build, the CPU and the thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"torch": torch.__version__, "cpu": cpu, "threads": torch.get_num_threads()}


def tensor_facts(tensor: torch.Tensor) -> dict[str, Any]:
    """A tensor's SHA-256 (dtype, shape, bytes) and its sum and norm as exact decimal floats."""
    data = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {
        "sha256": digest.hexdigest(),
        "sum": repr(float(data.double().sum())),
        "norm": repr(float(data.double().norm())),
    }


def golden_model(kind: str, algorithm: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "conv4":
        spec = ALGORITHMS.get(algorithm)
        model: torch.nn.Module = Conv4(
            in_channels=1,
            num_classes=WAYS,
            hidden=4,
            image_size=16,
            track_running_stats=spec.bn_per_step_stats,
        )
    else:
        model = MLP(in_channels=4, num_classes=WAYS, hidden=8)
    return model.double()


def golden_episode(kind: str) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    shape = (1, 16, 16) if kind == "conv4" else (4,)
    sx = torch.rand(TASKS, WAYS * SHOTS, *shape, generator=g, dtype=torch.float64)
    qx = torch.rand(TASKS, WAYS * QUERIES, *shape, generator=g, dtype=torch.float64)
    sy = torch.arange(WAYS).repeat_interleave(SHOTS).repeat(TASKS, 1)
    qy = torch.arange(WAYS).repeat_interleave(QUERIES).repeat(TASKS, 1)
    return sx, sy, qx, qy


def meta_gradient(algorithm: str, kind: str) -> dict[str, Any]:
    """The meta-loss and meta-gradient facts of ``algorithm`` on model ``kind``.

    Two inner steps at outer iteration 3, with the MAML++ schedules shortened so that iteration
    3 is second order and still weighs every step's query loss.
    """
    learner = MetaLearner(
        golden_model(kind, algorithm),
        algorithm,
        inner_lr=0.1,
        inner_steps=2,
        msl_anneal_iterations=10,
        first_order_iterations=2,
    ).double()
    loss, metrics = learner.meta_loss(*golden_episode(kind), iteration=3)
    loss.backward()
    return {
        "loss": repr(float(loss.detach())),
        "metrics": {key: repr(value) for key, value in sorted(metrics.items())},
        "gradients": {
            name: tensor_facts(p.grad if p.grad is not None else torch.zeros_like(p))
            for name, p in learner.named_parameters()
        },
    }


def cli_run(algorithm: str, data_root: Path, out: Path) -> dict[str, Any]:
    """A fixed 5-iteration ``mamlkit train`` run in a fresh process: its metrics and weights."""
    command = [
        sys.executable, "-m", "mamlkit", "train", "--algorithm", algorithm,
        "--iterations", "5", "--meta-batch", "4", "--inner-steps", "2", "--queries", "5",
        "--hidden", "16", "--log-every", "1", "--seed", "0", "--threads", "2",
        "--data-root", str(data_root), "--out", str(out), "--no-progress",
    ]  # fmt: skip
    if algorithm == "mamlpp":  # the length the record was made with (first order throughout)
        command += ["--first-order-iterations", "25000"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    records = [
        {k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
        for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    tensors, _ = load_tensors(out / "model.safetensors")
    return {
        "metrics": records,
        "weights": {name: tensor_facts(tensors[name]) for name in sorted(tensors)},
    }


def _close(want: str, got: str, rel: float) -> bool:
    a, b = float(want), float(got)
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel)


def compare_facts(want: dict[str, Any], got: dict[str, Any], exact: bool, rel: float) -> list[str]:
    """Where two tensor-fact tables differ (bits when ``exact``, else sums and norms)."""
    problems = []
    if sorted(want) != sorted(got):
        problems.append(f"tensor names differ: {sorted(want)} vs {sorted(got)}")
    for name in sorted(set(want) & set(got)):
        if exact and want[name]["sha256"] != got[name]["sha256"]:
            problems.append(f"{name}: bytes differ (sum {want[name]['sum']} -> {got[name]['sum']})")
        for key in ("sum", "norm"):
            if not _close(want[name][key], got[name][key], rel):
                problems.append(f"{name}: {key} {want[name][key]} -> {got[name][key]}")
    return problems


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _same_machine(recorded: dict[str, Any]) -> bool:
    return recorded["environment"] == environment()


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_meta_gradients_match_the_golden_record(algorithm: str, kind: str) -> None:
    recorded = _load(GRADIENTS_FILE)
    assert algorithm in recorded["entries"], (
        f"no golden record for {algorithm!r}; record it with "
        f"python tests/test_golden.py --record {algorithm}"
    )
    want = recorded["entries"][algorithm][kind]
    got = meta_gradient(algorithm, kind)
    exact = _same_machine(recorded)
    problems = compare_facts(want["gradients"], got["gradients"], exact, rel=1e-9)
    if exact:
        assert got["loss"] == want["loss"] and got["metrics"] == want["metrics"]
    else:
        assert _close(want["loss"], got["loss"], 1e-9)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", CLI_ALGORITHMS)
def test_cli_training_runs_match_the_golden_record(
    algorithm: str, omniglot_root: Path, tmp_path: Path
) -> None:
    recorded = _load(RUNS_FILE)
    want = recorded["entries"][algorithm]
    got = cli_run(algorithm, omniglot_root, tmp_path / "run")
    if _same_machine(recorded):
        assert got["metrics"] == want["metrics"]
    else:
        assert len(got["metrics"]) == len(want["metrics"])
        for a, b in zip(want["metrics"], got["metrics"], strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-6), (key, a, b)
    problems = compare_facts(want["weights"], got["weights"], _same_machine(recorded), rel=1e-5)
    assert not problems, "\n".join(problems)


def record(names: list[str]) -> None:
    """Write the golden entries of ``names`` (``all``: every algorithm and CLI run)."""
    import os
    import tempfile

    from conftest import OMNIGLOT_DIR

    GOLDEN.mkdir(exist_ok=True)
    everything = names == ["all"]
    gradients = (
        _load(GRADIENTS_FILE) if GRADIENTS_FILE.exists() and not everything else {"entries": {}}
    )
    gradients["environment"] = environment()
    for name in ALGORITHMS.names() if everything else names:
        gradients["entries"][name] = {kind: meta_gradient(name, kind) for kind in MODELS}
        print(f"recorded meta-gradients of {name}")
    gradients["entries"] = dict(sorted(gradients["entries"].items()))
    GRADIENTS_FILE.write_text(json.dumps(gradients, indent=1) + "\n")
    if everything:
        runs: dict[str, Any] = {"environment": environment(), "entries": {}}
        with tempfile.TemporaryDirectory() as folder:
            os.environ.setdefault("MAMLKIT_CACHE", str(Path(folder) / "decoded"))
            for name in CLI_ALGORITHMS:
                runs["entries"][name] = cli_run(name, OMNIGLOT_DIR.parent, Path(folder) / name)
                print(f"recorded the CLI run of {name}")
        RUNS_FILE.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if len(arguments) < 2 or arguments[0] != "--record":
        sys.exit("usage: python tests/test_golden.py --record all|NAME [NAME ...]")
    record(arguments[1:])
