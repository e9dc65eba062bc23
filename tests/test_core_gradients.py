"""Meta-gradients of the core against a hand-unrolled reference and central finite differences.

Everything here runs in float64 through ``MetaLearner.meta_loss``, the path training uses, once
per execution strategy (``loop``: task by task; ``batched``: all tasks in one traced program
with the fast CPU kernels), so every strategy is held to the same references.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mamlkit import ALGORITHMS, Conv4, MetaLearner
from mamlkit.algorithms import parse_algorithm
from mamlkit.algorithms.mamlpp import msl_weights
from mamlkit.core import adapt, functional_forward, last_step_weights, make_update_rule

WAYS, SHOTS, QUERIES, TASKS, SIZE = 3, 2, 2, 2, 16
EXECUTIONS = ["loop", "batched"]


def tiny_conv(seed: int = 0, track_running_stats: bool = False) -> Conv4:
    torch.manual_seed(seed)
    model = Conv4(
        in_channels=1,
        num_classes=WAYS,
        hidden=2,
        image_size=SIZE,
        track_running_stats=track_running_stats,
    )
    return model.double()


def make_learner(preset: str, execution: str, **settings: object) -> MetaLearner:
    """A float64 learner of ``preset`` on the tiny Conv4, second order from iteration 0.

    Presets with per-step running statistics (BNRS) get a model that tracks them. BatchNorm
    updating running statistics in training runs task by task, so under ``batched`` such a
    preset is tested without BNRS (its BNRS is tested on its own below).
    """
    spec = parse_algorithm(preset)
    if execution == "batched" and spec.bn_per_step_stats:
        spec = spec.replace(bn_per_step_stats=False)
    settings.setdefault("first_order_iterations", 0)
    model = tiny_conv(track_running_stats=spec.bn_per_step_stats)
    return MetaLearner(model, spec, execution=execution, **settings).double()  # type: ignore[arg-type]


def episode(seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(TASKS, WAYS * SHOTS, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    qx = torch.rand(TASKS, WAYS * QUERIES, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    sy = torch.arange(WAYS).repeat_interleave(SHOTS).repeat(TASKS, 1)
    qy = torch.arange(WAYS).repeat_interleave(QUERIES).repeat(TASKS, 1)
    return sx, sy, qx, qy


def reference_forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Conv4 written out op by op (no functional_call, no mamlkit code)."""
    h = x
    for i in range(1, 5):
        block = f"features.block{i}"
        h = F.conv2d(h, p[f"{block}.conv.weight"], p[f"{block}.conv.bias"], padding=1)
        h = F.batch_norm(h, None, None, p[f"{block}.norm.weight"], p[f"{block}.norm.bias"], True)
        h = F.max_pool2d(F.relu(h), 2)
    return F.linear(h.flatten(1), p["head.weight"], p["head.bias"])


def bn_weights_at(learner: MetaLearner, params: dict, step: int) -> dict:
    """MAML++ BNWB by hand: step ``s >= 1`` uses its own BatchNorm scales and shifts."""
    if step == 0 or not learner.algorithm.bn_per_step_weights:
        return params
    chosen = dict(params)
    for i in range(1, 5):
        for leaf in ("weight", "bias"):
            name = f"features.block{i}.norm.{leaf}"
            chosen[name] = learner.per_step.weights[name.replace(".", "-")][step - 1]
    return chosen


def reference_meta_loss(learner: MetaLearner, data, step_weights, lr_of, first_order=False):
    """The MAML objective unrolled by hand: K explicit SGD steps per task, weighted query losses.

    Only ``learner.adapt_names`` adapt; the support pass of step ``s`` and the query pass after
    it use the BatchNorm weights of step ``s`` (MAML++ BNWB, where the preset has it).
    """
    sx, sy, qx, qy = data
    theta = dict(learner.model.named_parameters())
    adapting = learner.adapt_names
    total = 0.0
    for b in range(sx.shape[0]):
        params = dict(theta)
        task_loss = 0.0
        for step in range(len(step_weights)):
            if first_order:
                source = {
                    n: (p.detach().requires_grad_() if n in adapting else p.detach())
                    for n, p in params.items()
                }
            else:
                source = params
            inner = F.cross_entropy(
                reference_forward(bn_weights_at(learner, source, step), sx[b]), sy[b]
            )
            grads = torch.autograd.grad(
                inner, [source[n] for n in adapting], create_graph=not first_order
            )
            params = dict(params)
            for n, g in zip(adapting, grads, strict=True):
                params[n] = params[n] - lr_of(n, step) * g
            if step_weights[step] != 0:
                query = reference_forward(bn_weights_at(learner, params, step), qx[b])
                task_loss = task_loss + step_weights[step] * F.cross_entropy(query, qy[b])
        total = total + task_loss
    return total / sx.shape[0]


def grads_of(loss: torch.Tensor, learner: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(learner.parameters())))


def lr_lookup(learner: MetaLearner):
    return lambda name, step: learner.inner_update.learning_rate(name, step)


#: Presets whose outer gradient is the meta-gradient (Reptile has its own tests).
META_PRESETS = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).outer_gradient == "meta"]


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
    for got, want in zip(grads_of(loss, learner), grads_of(expected, learner), strict=True):
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


def test_one_inner_step_passes_gradgradcheck() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    names = [n for n, _ in model.named_parameters()]
    forward = functional_forward(model)
    update = make_update_rule("fixed", names, 0.5, 1)
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 0, 1])

    def one_step(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params = dict(zip(names, tensors, strict=True))
        adapted = adapt(forward, params, x, y, update=update, steps=1, first_order=False)[-1]
        return tuple(adapted[n] for n in names)

    inputs = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(one_step, inputs)
    assert torch.autograd.gradgradcheck(one_step, inputs)


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
@pytest.mark.parametrize("iteration", [0, 1200, 4999, 5000])
def test_msl_loss_is_the_manually_weighted_sum_of_step_losses(
    iteration: int, execution: str
) -> None:
    learner = make_learner("mamlpp", execution, inner_lr=0.3, inner_steps=3)
    data = episode()
    loss, _ = learner.meta_loss(*data, iteration=iteration)
    sx, sy, qx, qy = data
    scores = learner.score_tasks(sx, sy, qx, qy)  # per-task query losses after 0..K steps
    weights = msl_weights(3, iteration, learner.hooks.options["msl_anneal_iterations"])
    manual = (scores.loss[:, 1:] * weights).sum(dim=1).mean()
    torch.testing.assert_close(loss.detach(), manual)


def test_msl_weights_follow_the_maml_plus_plus_schedule() -> None:
    torch.testing.assert_close(msl_weights(5, 0, 100), torch.full((5,), 0.2, dtype=torch.float64))
    mid = msl_weights(5, 50, 100)
    torch.testing.assert_close(mid.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(mid[:4], torch.full((4,), 0.1, dtype=torch.float64))
    late = msl_weights(5, 99, 100)
    torch.testing.assert_close(late[:4], torch.full((4,), 0.03 / 5, dtype=torch.float64))
    torch.testing.assert_close(late[4], torch.tensor(1 - 4 * 0.03 / 5, dtype=torch.float64))
    torch.testing.assert_close(msl_weights(5, 100, 100), last_step_weights(5))
    with pytest.raises(ValueError, match="positive integer"):
        msl_weights(0, 0, 10)


def cancelled_by_batch_norm(name: str) -> bool:
    """Conv4's conv biases feed batch-statistics BatchNorm, which subtracts them again: their
    gradient, and so that of their learned inner rate, is zero in exact arithmetic on every path
    (the loop shows only rounding noise)."""
    bias = name.startswith("model.features.") and name.endswith(".conv.bias")
    rate = name.startswith("inner_update.rates.features-") and name.endswith("-conv-bias")
    return bias or rate


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
@pytest.mark.parametrize("preset", ["maml", "fomaml", "mamlpp", "reptile"])
@pytest.mark.parametrize("group", [None, 1])
def test_meta_backward_in_groups_gives_the_meta_loss_gradient(
    preset: str, group: int | None, execution: str
) -> None:
    data = episode()
    learner = make_learner(preset, execution, inner_lr=0.3, inner_steps=2)
    loss, metrics = learner.meta_loss(*data, iteration=5)
    expected = grads_of(loss, learner)
    got_metrics = learner.meta_backward(*data, iteration=5, tasks_per_backward=group)
    for param, want in zip(learner.parameters(), expected, strict=True):
        torch.testing.assert_close(param.grad, want)
    assert got_metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    assert got_metrics["loss"] == pytest.approx(metrics["loss"])
