"""Reptile: the outer gradient is theta minus the adapted weights, with SGD or Adam inner steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mamlkit import MetaLearner
from tests.helpers.conv4_reference import (
    EXECUTIONS,
    episode,
    grads_of,
    make_learner,
    reference_forward,
)


def sgd_adapted(learner: MetaLearner, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int):
    """K plain SGD steps on one task's support loss, written out by hand."""
    params = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    for _ in range(steps):
        leaves = {n: p.requires_grad_() for n, p in params.items()}
        loss = F.cross_entropy(reference_forward(leaves, x), y)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        params = {n: (p - lr * g).detach() for (n, p), g in zip(leaves.items(), grads, strict=True)}
    return params


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("steps", [1, 3])
def test_reptile_gradient_is_theta_minus_adapted_weights(execution: str, steps: int) -> None:
    learner = make_learner("reptile", execution, inner_lr=0.3, inner_steps=steps)
    sx, sy, qx, qy = data = episode()
    loss, metrics = learner.meta_loss(*data)
    got = dict(zip(dict(learner.named_parameters()), grads_of(loss, learner), strict=True))
    theta = {n: p.detach() for n, p in learner.model.named_parameters()}
    expected = {n: torch.zeros_like(p) for n, p in theta.items()}
    query_losses = []
    for b in range(sx.shape[0]):
        phi = sgd_adapted(learner, sx[b], sy[b], 0.3, steps)
        for n in theta:
            expected[n] += (theta[n] - phi[n]) / sx.shape[0]
        query_losses.append(F.cross_entropy(reference_forward(phi, qx[b]), qy[b]).item())
    for n in theta:
        torch.testing.assert_close(got[f"model.{n}"], expected[n])
    # the reported loss is the query loss after adaptation (a metric, not what is optimised)
    assert metrics["loss"] == pytest.approx(sum(query_losses) / len(query_losses))


def test_reptile_with_adam_moves_theta_toward_the_adapted_weights() -> None:
    learner = make_learner("reptile[update_rule=adam]", "batched", inner_lr=0.01, inner_steps=3)
    data = episode()
    loss, _ = learner.meta_loss(*data)
    grads = grads_of(loss, learner)
    adapted = learner.adapt(data[0], data[1])
    for (name, theta), grad in zip(learner.model.named_parameters(), grads, strict=True):
        mean_phi = adapted.task_params[name].mean(0).detach()
        torch.testing.assert_close(grad, theta.detach() - mean_phi)
