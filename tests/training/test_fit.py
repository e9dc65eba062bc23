"""Training with :func:`mamlkit.train_maml` and :func:`mamlkit.fit`: the meta-loss falls, and a
non-finite loss or meta-gradient stops training, naming where it happened."""

from __future__ import annotations

import pytest
import torch

import mamlkit
from mamlkit import MAML, train_maml
from tests.helpers.blobs import Flat, linear_tasks


@pytest.mark.parametrize("plus_plus", [False, True])
@pytest.mark.parametrize("first_order", [False, True])
def test_train_maml_lowers_the_meta_loss(first_order: bool, plus_plus: bool) -> None:
    torch.manual_seed(0)
    batches = [linear_tasks(8, seed=s) for s in range(60)]
    model, learner, losses = train_maml(
        Flat(),
        batches,
        inner_lr=0.1,
        outer_lr=0.01,
        inner_steps=2,
        first_order=first_order,
        plus_plus=plus_plus,
        progress=False,
    )
    assert model is learner.model and len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10


def test_non_finite_loss_stops_training_with_the_iteration_and_inner_step() -> None:
    learner = MAML(Flat(), inner_lr=1e30, inner_steps=2)
    before = [p.detach().clone() for p in learner.parameters()]
    optimizer = torch.optim.Adam(learner.parameters())
    with pytest.raises(
        FloatingPointError,
        match=r"at iteration 1 \(the query loss is first non-finite after inner step \d\); the "
        "usual cause is an inner learning rate",
    ):
        mamlkit.fit(learner, [linear_tasks(2)], optimizer, progress=False)
    for old, new in zip(before, learner.parameters(), strict=True):
        assert torch.equal(old, new), "the bad iteration's update must not be applied"


def test_a_non_finite_meta_gradient_is_named() -> None:
    learner = MAML(Flat(), inner_lr=0.1, inner_steps=1)

    # the loss stays finite; only the accumulated meta-gradient of one tensor is poisoned
    def poison(param: torch.Tensor) -> None:
        param.grad.fill_(float("nan"))  # type: ignore[union-attr]

    learner.model.head.weight.register_post_accumulate_grad_hook(poison)
    optimizer = torch.optim.Adam(learner.parameters())
    with pytest.raises(
        FloatingPointError, match=r"the meta-gradient of model\.head\.weight became"
    ):
        mamlkit.fit(learner, [linear_tasks(2)], optimizer, progress=False)
