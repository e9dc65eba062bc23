"""Every registered model: the factory signature, shapes, parameter names, and MAML's
second-order meta-gradient through the default (batched) execution against the task-by-task
reference and against central finite differences, in float64 on a tiny instance."""

from __future__ import annotations

import pytest
import torch

from mamlkit import MODELS, MetaLearner
from tests.helpers.finite_differences import central_differences_agree
from tests.helpers.tiny_models import TINY, VARIANTS, WAYS, build, episode


def test_every_registered_model_has_a_tiny_setting() -> None:
    assert set(TINY) == set(MODELS.names())


@pytest.mark.parametrize("name", sorted(TINY) + sorted(VARIANTS))
def test_model_shapes_and_head(name: str) -> None:
    model, shape = build(name)
    out = model(torch.rand(4, *shape, dtype=torch.float64))
    assert out.shape == (4, WAYS)
    names = [n for n, _ in model.named_parameters()]
    assert names[-2:] == ["head.weight", "head.bias"], "ANIL-style filters rely on 'head.*'"


@pytest.mark.parametrize("name", sorted(TINY) + sorted(VARIANTS))
def test_model_meta_gradient_batched_equals_loop_and_finite_differences(name: str) -> None:
    data = episode({**TINY, **VARIANTS}[name][1])
    learners = {}
    for execution in ("loop", "auto"):
        model, _ = build(name)
        learners[execution] = MetaLearner(
            model, "maml", inner_lr=0.2, inner_steps=1, execution=execution
        ).double()
    fast = learners["auto"]
    assert fast.execution_strategy == "batched", f"{name} does not run batched"
    grads = {}
    for execution, learner in learners.items():
        loss, _ = learner.meta_loss(*data)
        grads[execution] = torch.autograd.grad(
            loss, list(learner.parameters()), allow_unused=True, materialize_grads=True
        )
    for a, b in zip(grads["auto"], grads["loop"], strict=True):
        torch.testing.assert_close(a, b)
    central_differences_agree(fast, data, entries=3)  # a few entries of every tensor
