"""Every registered model: the factory signature, shapes, parameter names, and MAML's
second-order meta-gradient through the default (batched) execution against the task-by-task
reference and against central finite differences, in float64 on a tiny instance."""

from __future__ import annotations

import pytest
import torch

from mamlkit import MODELS, MetaLearner

#: A tiny instance of each model: factory kwargs and the per-example input shape.
TINY = {
    "conv4": ({"in_channels": 1, "hidden": 3, "image_size": 16}, (1, 16, 16)),
    "mlp": ({"in_channels": 1, "hidden": 6, "image_size": 1}, (1,)),
    "resnet12": ({"in_channels": 3, "hidden": 2, "image_size": 16}, (3, 16, 16)),
}
WAYS = 3


def test_every_registered_model_has_a_tiny_setting() -> None:
    assert set(TINY) == set(MODELS.names())


def build(name: str, seed: int = 0) -> tuple[torch.nn.Module, tuple[int, ...]]:
    kwargs, shape = TINY[name]
    torch.manual_seed(seed)
    return MODELS.get(name)(num_classes=WAYS, **kwargs).double(), shape


def episode(shape: tuple[int, ...], tasks: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(3)
    sx = torch.rand(tasks, 2 * WAYS, *shape, generator=g, dtype=torch.float64)
    qx = torch.rand(tasks, 2 * WAYS, *shape, generator=g, dtype=torch.float64)
    y = torch.arange(WAYS).repeat(2).repeat(tasks, 1)
    return sx, y, qx, y


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_shapes_and_head(name: str) -> None:
    model, shape = build(name)
    out = model(torch.rand(4, *shape, dtype=torch.float64))
    assert out.shape == (4, WAYS)
    names = [n for n, _ in model.named_parameters()]
    assert names[-2:] == ["head.weight", "head.bias"], "ANIL-style filters rely on 'head.*'"


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_meta_gradient_batched_equals_loop_and_finite_differences(name: str) -> None:
    data = episode(TINY[name][1])
    learners = {}
    for execution in ("loop", "auto"):
        model, _ = build(name)
        learners[execution] = MetaLearner(
            model, "maml", inner_lr=0.2, inner_steps=1, execution=execution
        ).double()
    fast = learners["auto"]
    assert fast.execution_strategy == "batched", f"{name} no longer runs batched"
    grads = {}
    for execution, learner in learners.items():
        loss, _ = learner.meta_loss(*data)
        grads[execution] = torch.autograd.grad(
            loss, list(learner.parameters()), allow_unused=True, materialize_grads=True
        )
    for a, b in zip(grads["auto"], grads["loop"], strict=True):
        torch.testing.assert_close(a, b)
    central_differences_agree(fast, data, entries=3)  # a few entries of every tensor


def central_differences_agree(learner: MetaLearner, data: tuple, entries: int = 2) -> None:
    """The meta-gradient of ``entries`` random entries of every tensor against (f(+e)-f(-e))/2e."""
    loss, _ = learner.meta_loss(*data)
    grads = torch.autograd.grad(
        loss, list(learner.parameters()), allow_unused=True, materialize_grads=True
    )
    g = torch.Generator().manual_seed(5)
    eps = 1e-6
    with torch.no_grad():
        for param, analytic in zip(learner.parameters(), grads, strict=True):
            flat, want = param.view(-1), analytic.reshape(-1)
            for i in torch.randperm(flat.numel(), generator=g)[:entries].tolist():
                original = flat[i].item()
                flat[i] = original + eps
                plus = learner.meta_loss(*data)[0].item()
                flat[i] = original - eps
                minus = learner.meta_loss(*data)[0].item()
                flat[i] = original
                numeric = torch.tensor((plus - minus) / (2 * eps), dtype=torch.float64)
                torch.testing.assert_close(want[i], numeric, rtol=1e-4, atol=1e-6)
