"""Meta-gradients against a hand-unrolled reference and central finite differences.

Everything here runs in float64 through ``MetaLearner.meta_loss``, the path training uses, once
per execution strategy (``loop``: task by task; ``batched``: all tasks in one traced program
with the fast CPU kernels), so every strategy is held to the same references
(:mod:`tests.helpers.conv4_reference`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mamlkit import ALGORITHMS, MetaLearner
from tests.helpers.conv4_reference import (
    EXECUTIONS,
    cancelled_by_batch_norm,
    episode,
    grads_of,
    make_learner,
    reference_forward,
    reference_meta_loss,
    tiny_conv,
)


def lr_lookup(learner: MetaLearner):
    return lambda name, step: learner.inner_update.learning_rate(name, step)


#: Presets whose outer gradient is the meta-gradient (Reptile has its own tests).
META_PRESETS = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).outer_gradient == "meta"]


def meta_backward_grads(learner: MetaLearner, data: tuple, iteration: int) -> list[torch.Tensor]:
    """The gradients training uses: ``meta_backward`` (query sets differentiated as soon as they
    are scored), in ``learner.parameters()`` order."""
    learner.zero_grad(set_to_none=True)
    learner.meta_backward(*data, iteration=iteration)
    grads = [p.grad.clone() for p in learner.parameters()]
    learner.zero_grad(set_to_none=True)
    return grads


def randomise_learned_tensors(learner: MetaLearner) -> None:
    """Learned rates and per-step BatchNorm weights that differ per tensor, element and step."""
    with torch.no_grad():
        for rate in learner.inner_update.parameters():
            rate.uniform_(0.1, 0.5)
        for weight in learner.per_step.parameters():
            weight.add_(torch.empty_like(weight).uniform_(-0.3, 0.3))


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("preset", [*META_PRESETS, "mamlpp[bn_per_step_stats=true]"])
@pytest.mark.parametrize("steps", [1, 2])
def test_meta_gradient_matches_hand_unrolled_reference(
    preset: str, steps: int, execution: str
) -> None:
    learner = make_learner(preset, execution, inner_lr=0.3, inner_steps=steps)
    if not learner.algorithm.bn_per_step_stats:
        assert learner.execution_strategy == execution
    randomise_learned_tensors(learner)
    data = episode()
    iteration = 7
    loss, _ = learner.meta_loss(*data, iteration=iteration)
    weights = learner.step_weights(iteration).tolist()
    expected = reference_meta_loss(
        learner, data, weights, lr_lookup(learner), first_order=learner.first_order
    )
    torch.testing.assert_close(loss, expected)
    wanted = grads_of(expected, learner)
    for got, want in zip(grads_of(loss, learner), wanted, strict=True):
        torch.testing.assert_close(got, want)
    for got, want in zip(meta_backward_grads(learner, data, iteration), wanted, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("preset", [n for n in META_PRESETS if not ALGORITHMS.get(n).first_order])
def test_second_order_meta_gradient_matches_central_finite_differences(
    preset: str, execution: str
) -> None:
    learner = make_learner(preset, execution, inner_lr=0.3, inner_steps=2)
    randomise_learned_tensors(learner)
    data = episode()
    loss, _ = learner.meta_loss(*data, iteration=3)
    analytic = torch.cat([g.reshape(-1) for g in grads_of(loss, learner)])
    eps = 1e-6
    numeric = []
    with torch.no_grad():
        for param in learner.parameters():
            flat = param.view(-1)
            for i in range(flat.numel()):
                original = flat[i].item()
                flat[i] = original + eps
                plus = learner.meta_loss(*data, iteration=3)[0].item()
                flat[i] = original - eps
                minus = learner.meta_loss(*data, iteration=3)[0].item()
                flat[i] = original
                numeric.append((plus - minus) / (2 * eps))
    numeric_t = torch.tensor(numeric, dtype=torch.float64)
    torch.testing.assert_close(analytic, numeric_t, rtol=1e-4, atol=1e-6)
    trained = torch.cat([g.reshape(-1) for g in meta_backward_grads(learner, data, 3)])
    torch.testing.assert_close(trained, numeric_t, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_second_order_differs_from_first_order(execution: str) -> None:
    data = episode()
    second = MetaLearner(
        tiny_conv(), "maml", inner_lr=0.3, inner_steps=2, execution=execution
    ).double()
    first = MetaLearner(
        tiny_conv(), "fomaml", inner_lr=0.3, inner_steps=2, execution=execution
    ).double()
    g2 = grads_of(second.meta_loss(*data)[0], second)
    g1 = grads_of(first.meta_loss(*data)[0], first)
    gap = max((a - b).abs().max().item() for a, b in zip(g1, g2, strict=True))
    assert gap > 1e-4, "second-order gradients equal first-order ones: the Hessian term is missing"


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("steps", [1, 3])
def test_fomaml_gradient_is_query_gradient_at_adapted_weights(steps: int, execution: str) -> None:
    learner = MetaLearner(
        tiny_conv(), "fomaml", inner_lr=0.3, inner_steps=steps, execution=execution
    ).double()
    data = episode()
    loss, _ = learner.meta_loss(*data)
    got = grads_of(loss, learner)
    sx, sy, qx, qy = data
    expected = [torch.zeros_like(p) for p in learner.parameters()]
    adapted_all = learner.adapt(sx, sy).params
    for b, adapted in enumerate(adapted_all):
        leaves = {n: p.detach().requires_grad_() for n, p in adapted.items()}
        query_loss = F.cross_entropy(reference_forward(leaves, qx[b]), qy[b])
        for e, g in zip(
            expected, torch.autograd.grad(query_loss, list(leaves.values())), strict=True
        ):
            e += g / sx.shape[0]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_first_order_learned_lr_gradient_formula(execution: str) -> None:
    """First-order LSLR, one step: dL/d(alpha_n) = -<g_support_n, dL_query/dtheta'_n>, mean over
    tasks (BatchNorm tensors adapt here, so every tensor has a rate)."""
    variant = "fomamlpp[bn_per_step_stats=false,bn_per_step_weights=false]"
    learner = MetaLearner(
        tiny_conv(), variant, inner_lr=0.3, inner_steps=1, execution=execution
    ).double()
    data = episode()
    loss, _ = learner.meta_loss(*data, iteration=10**6)
    rates = dict(learner.inner_update.rates.named_parameters())
    got = dict(zip(rates, torch.autograd.grad(loss, list(rates.values())), strict=True))
    sx, sy, qx, qy = data
    theta = {n: p.detach() for n, p in learner.model.named_parameters()}
    for name in theta:
        expected = torch.zeros(1, dtype=torch.float64)
        for b in range(sx.shape[0]):
            leaves = {n: p.clone().requires_grad_() for n, p in theta.items()}
            g_all = dict(
                zip(
                    theta,
                    torch.autograd.grad(
                        F.cross_entropy(reference_forward(leaves, sx[b]), sy[b]),
                        list(leaves.values()),
                    ),
                    strict=True,
                )
            )
            adapted = {n: (p - 0.3 * g_all[n]).requires_grad_() for n, p in theta.items()}
            g_query = torch.autograd.grad(
                F.cross_entropy(reference_forward(adapted, qx[b]), qy[b]), adapted[name]
            )[0]
            expected -= (g_all[name] * g_query).sum() / sx.shape[0]
        torch.testing.assert_close(got[name.replace(".", "-")].reshape(1), expected)


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_every_learnable_of_every_preset_gets_a_gradient(name: str, execution: str) -> None:
    learner = make_learner(name, execution, inner_lr=0.3, inner_steps=2)
    loss, _ = learner.meta_loss(*episode())
    loss.backward()
    for param_name, param in learner.named_parameters():
        assert param.grad is not None, f"{name}: {param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {param_name} has a non-finite gradient"
        if cancelled_by_batch_norm(param_name):
            assert param.grad.abs().max() < 1e-12, f"{name}: {param_name} should get zero"
        else:
            assert param.grad.abs().sum() > 0, f"{name}: {param_name} has an all-zero gradient"
    learned = [n for n, _ in learner.named_parameters() if n.startswith("inner_update.")]
    assert bool(learned) == (learner.algorithm.update_rule != "fixed")


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize(
    "preset",
    [*ALGORITHMS.names(), "mamlpp[bn_per_step_stats=true]", "fomaml[update_rule=per_tensor]"],
)
@pytest.mark.parametrize(("group", "query_chunk"), [(None, None), (1, None), (None, 1)])
def test_meta_backward_in_groups_gives_the_meta_loss_gradient(
    preset: str, group: int | None, query_chunk: int | None, execution: str
) -> None:
    """``meta_backward`` differentiates each group of query sets as soon as it is scored, then
    backpropagates through the inner loops: the gradient of every learnable tensor (learned
    rates and per-step tensors included) is ``meta_loss``'s, in every task and query grouping."""
    data = episode()
    learner = make_learner(preset, execution, inner_lr=0.3, inner_steps=2, query_chunk=query_chunk)
    randomise_learned_tensors(learner)
    loss, metrics = learner.meta_loss(*data, iteration=5)
    expected = grads_of(loss, learner)
    got_metrics = learner.meta_backward(*data, iteration=5, tasks_per_backward=group)
    for param, want in zip(learner.parameters(), expected, strict=True):
        torch.testing.assert_close(param.grad, want)
    assert got_metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    assert got_metrics["loss"] == pytest.approx(metrics["loss"])
