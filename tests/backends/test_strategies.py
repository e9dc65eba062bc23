"""Execution strategies: the batched program gives the loop's outputs and meta-gradients on every
kind of model it accepts, refuses what it cannot run with a clear reason, and ``auto`` falls back.

The finite-difference and hand-unrolled checks of ``tests/algorithms/test_meta_gradients.py``
also run through both strategies; here the strategies are compared with each other on more model
shapes.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mamlkit import Conv4, MetaLearner
from mamlkit.backends import (
    BatchedForward,
    LoopForward,
    NotBatchable,
    TaskBatchedProgram,
    auto_query_chunk,
    make_task_forward,
    task_losses,
)


class Residual(nn.Module):
    """Conv stem, a residual block, LeakyReLU before a functional max-pool, view(size(0), -1)."""

    def __init__(self, ways: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stem_norm = nn.BatchNorm2d(4, track_running_stats=False)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(4, track_running_stats=False)
        self.act = nn.LeakyReLU(0.1)
        self.head = nn.Linear(4 * 4 * 4, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_norm(self.stem(x)))
        h = self.act(self.norm(self.conv(h)) + h)
        h = F.max_pool2d(h, 2)
        return self.head(h.view(h.size(0), -1))


class Mlp(nn.Module):
    def __init__(self, ways: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 8))
        self.head = nn.Linear(8, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


class Concatenating(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x.flatten(1))
        return torch.cat([h, h], dim=1)


def conv4() -> nn.Module:
    return Conv4(in_channels=1, num_classes=3, hidden=3, image_size=16)


MODELS = {
    "conv4": (conv4, (1, 16, 16)),
    "residual": (Residual, (3, 8, 8)),
    "mlp": (Mlp, (12,)),
}


def episode(shape: tuple[int, ...], tasks: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(tasks, 6, *shape, generator=g, dtype=torch.float64)
    qx = torch.rand(tasks, 9, *shape, generator=g, dtype=torch.float64)
    sy = torch.arange(3).repeat(2).repeat(tasks, 1)
    qy = torch.arange(3).repeat(3).repeat(tasks, 1)
    return sx, sy, qx, qy


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    return factory().double(), shape


def per_task_params(model: nn.Module, tasks: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Every other tensor per task (perturbed differently per task), the rest shared."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for index, (name, p) in enumerate(model.named_parameters()):
        if index % 2 == 0:
            noise = 0.1 * torch.randn(tasks, *p.shape, generator=g, dtype=p.dtype)
            params[name] = (p.detach() + noise).requires_grad_()
        else:
            params[name] = p
    return params


@pytest.mark.parametrize("name", list(MODELS))
def test_batched_program_gives_the_loop_outputs(name: str) -> None:
    model, shape = build(name)
    sx = episode(shape)[0]
    params = per_task_params(model, sx.shape[0])
    got = TaskBatchedProgram(model)(params, sx)
    want = LoopForward(model)(params, sx)
    torch.testing.assert_close(got, want)
    for a, b in zip(
        torch.autograd.grad(got.pow(2).sum(), list(params.values())),
        torch.autograd.grad(want.pow(2).sum(), list(params.values())),
        strict=True,
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list(MODELS))
# mamlpp without BNRS: BatchNorm updating running statistics in training runs task by task
# (tests/algorithms/test_mamlpp.py checks BNRS itself on both strategies).
@pytest.mark.parametrize("preset", ["maml", "fomaml", "mamlpp[bn_per_step_stats=false]"])
def test_strategies_give_the_same_meta_gradients(name: str, preset: str) -> None:
    data = episode(MODELS[name][1])
    results = []
    for execution, chunk in (("loop", None), ("batched", None), ("batched", 1)):
        model, _ = build(name)
        learner = MetaLearner(
            model, preset, inner_lr=0.2, inner_steps=2, execution=execution, query_chunk=chunk
        ).double()
        assert learner.execution_strategy == execution
        loss, metrics = learner.meta_loss(*data, iteration=0)
        grads = torch.autograd.grad(
            loss, list(learner.parameters()), allow_unused=True, materialize_grads=True
        )
        results.append((loss, metrics["accuracy"], grads))
    reference = results[0]
    for loss, accuracy, grads in results[1:]:
        torch.testing.assert_close(loss, reference[0])
        assert accuracy == reference[1]
        for a, b in zip(grads, reference[2], strict=True):
            torch.testing.assert_close(a, b)


def test_support_chunks_give_the_same_first_order_gradients() -> None:
    data = episode((1, 16, 16), tasks=5)
    grads = []
    for chunk in (None, 2):
        model, _ = build("conv4")
        learner = MetaLearner(model, "fomaml", inner_lr=0.2, inner_steps=2, support_chunk=chunk)
        loss, _ = learner.double().meta_loss(*data)
        grads.append(torch.autograd.grad(loss, list(learner.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_auto_runs_supported_models_batched_and_others_task_by_task() -> None:
    assert isinstance(make_task_forward(conv4()), BatchedForward)
    forward = make_task_forward(Concatenating())
    assert isinstance(forward, LoopForward)
    assert "cat" in forward.fallback_reason
    learner = MetaLearner(Concatenating(), "maml", inner_lr=0.1)
    assert learner.execution_strategy == "loop"


def test_forcing_batched_on_an_unsupported_model_names_the_operation() -> None:
    with pytest.raises(NotBatchable, match=r"execution='batched' cannot run this model.*cat"):
        MetaLearner(Concatenating(), "maml", inner_lr=0.1, execution="batched")
    with pytest.raises(ValueError, match="choose one of auto, loop, batched"):
        MetaLearner(conv4(), "maml", execution="fast")


def test_batch_norm_with_running_statistics_runs_task_by_task_in_training() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 14 * 14, 3)
    ).double()
    sx = episode((1, 16, 16))[0]
    params = per_task_params(model, sx.shape[0])
    forward = make_task_forward(model)
    before = model[1].running_mean.clone()
    torch.testing.assert_close(forward(params, sx), LoopForward(model)(params, sx))
    assert not torch.equal(model[1].running_mean, before), "the loop updates running stats"
    strict = make_task_forward(model, "batched")
    with pytest.raises(NotBatchable, match="running statistics in training mode"):
        strict(params, sx)
    model.eval()  # evaluation with running statistics is batched
    assert strict.program.unsupported_state() is None
    torch.testing.assert_close(strict(params, sx), LoopForward(model)(params, sx))


def test_dropout_runs_batched_only_in_evaluation() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.Dropout(0.5), nn.Linear(4, 3))
    program = TaskBatchedProgram(model.double())
    assert "dropout" in program.unsupported_state()
    model.eval()
    assert program.unsupported_state() is None


def test_batched_outputs_that_disagree_make_auto_fall_back_with_a_warning(monkeypatch) -> None:
    model, shape = build("mlp")
    sx = episode(shape)[0]
    params = per_task_params(model, sx.shape[0])
    forward = make_task_forward(model)
    original = TaskBatchedProgram.__call__
    monkeypatch.setattr(TaskBatchedProgram, "__call__", lambda *a: original(*a) + 1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = forward(params, sx)
    assert any("differ" in str(w.message) for w in caught)
    assert forward.name == "loop"
    torch.testing.assert_close(out, LoopForward(model)(params, sx))


def test_task_losses_equal_the_loss_of_each_task() -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(4, 6, 3, generator=g), torch.randint(0, 3, (4, 6), generator=g)
    want = torch.stack([F.cross_entropy(logits[b], labels[b]) for b in range(4)])
    torch.testing.assert_close(task_losses(F.cross_entropy, logits, labels), want)
    pred, target = torch.randn(4, 6, 1, generator=g), torch.randn(4, 6, 1, generator=g)
    want = torch.stack([F.mse_loss(pred[b], target[b]) for b in range(4)])
    torch.testing.assert_close(task_losses(F.mse_loss, pred, target), want)
    torch.testing.assert_close(task_losses(F.l1_loss, pred, target).shape, torch.Size([4]))


def test_query_chunks_follow_device_and_query_size() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert auto_query_chunk(8, 75, cpu) == 1
    assert auto_query_chunk(32, 5, cpu) == 32
    assert auto_query_chunk(8, 75, cuda) == 8


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("preset", ["maml", "fomaml"])
def test_strategies_agree_on_cuda(preset: str) -> None:
    data = tuple(t.cuda() for t in episode(MODELS["conv4"][1]))
    grads = []
    for execution in ("loop", "batched"):
        model, _ = build("conv4")
        learner = MetaLearner(model, preset, inner_lr=0.2, inner_steps=2, execution=execution)
        loss, _ = learner.double().cuda().meta_loss(*data)
        grads.append(torch.autograd.grad(loss, list(learner.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_float32_meta_gradients_are_as_accurate_batched_as_task_by_task(
    omniglot_root, data_cache_dir
) -> None:
    """float32 against float64 truth on real Omniglot tasks: the batched kernels must not lose
    precision. (Real images, whose neighbouring pixels are strongly correlated, are what make a
    float32 variance in the folded first layer lose digits; synthetic images do not show it.)"""
    from mamlkit.data import EpisodeSampler, Omniglot

    data = Omniglot(omniglot_root, "train", cache_dir=data_cache_dir)
    sx, sy, qx, qy = EpisodeSampler(data, 5, 1, 1, 16, seed=0).sample()
    torch.manual_seed(0)
    model = Conv4(in_channels=1, num_classes=5)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        for execution in ("loop", "batched"):
            learner = MetaLearner(
                copy.deepcopy(model), "maml", inner_lr=0.4, inner_steps=2, execution=execution
            ).to(dtype)
            loss, _ = learner.meta_loss(sx.to(dtype), sy, qx.to(dtype), qy)
            flat = torch.autograd.grad(
                loss, list(learner.parameters()), materialize_grads=True, allow_unused=True
            )
            grads[dtype, execution] = torch.cat([g.double().flatten() for g in flat])
    truth = grads[torch.float64, "loop"]
    torch.testing.assert_close(grads[torch.float64, "batched"], truth)

    def error(execution: str) -> float:
        return float((grads[torch.float32, execution] - truth).norm() / truth.norm())

    # shown by `pytest -s -k float32` (quoted in docs/performance.md)
    print(f"float32 meta-gradient relative error: batched {error('batched'):.1e}, "
          f"task by task {error('loop'):.1e}")  # fmt: skip
    assert error("batched") < 2 * error("loop"), (error("batched"), error("loop"))
