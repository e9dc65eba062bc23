"""The algorithm family beyond plain MAML: variants, Reptile, inner Adam, Meta-SGD, ANIL and the
MAML++ tricks (derivative-order annealing, per-step BatchNorm weights and running statistics).

Meta-gradients of every ``meta`` preset against the hand-unrolled reference and finite
differences are in ``test_core_gradients.py``; this file checks what those cannot see.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mamlkit import ALGORITHMS, MetaLearner, fit
from mamlkit.algorithms import AlgorithmSpec, parse_algorithm
from test_core_gradients import (
    EXECUTIONS,
    episode,
    grads_of,
    make_learner,
    reference_forward,
    reference_meta_loss,
    tiny_conv,
)

# -- variants ------------------------------------------------------------------------------------


def test_a_variant_switches_settings_and_keeps_its_full_name() -> None:
    spec = parse_algorithm("mamlpp[bn_per_step_stats=true, derivative_annealing=false]")
    assert spec.name == "mamlpp[bn_per_step_stats=true, derivative_annealing=false]"
    assert spec.bn_per_step_stats and not spec.derivative_annealing
    assert spec.bn_per_step_weights and spec.update_rule == "per_tensor_per_step"
    # BNRS is opt-in (docs/algorithms/mamlpp.md)
    assert not parse_algorithm("mamlpp").bn_per_step_stats
    assert parse_algorithm("maml[adapt=head.*|features.block4.*]").adapt == (
        "head.*",
        "features.block4.*",
    )
    assert parse_algorithm("reptile[update_rule=adam]").update_rule == "adam"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mamlpp[bn_per_step_stat=false]", "did you mean 'bn_per_step_stats'"),
        ("mamlpp[bn_per_step_stats=no]", "must be true or false"),
        ("mamlpp[bn_per_step_stats=false", "preset[setting=value"),
        ("mamlpp[msl]", "expected setting=value"),
        ("maml[first_order=true,first_order=false]", "given twice"),
        ("maml[name=x]", "cannot be set"),
        ("mamlp[first_order=true]", "did you mean 'mamlpp'"),
        ("maml[update_rule=sgd]", "choose one of"),
        ("reptile[first_order=false]", "never differentiates"),
        ("reptile[update_rule=per_tensor]", "gives them no gradient"),
        ("reptile[step_loss=msl]", "uses no query loss"),
        ("fomaml[derivative_annealing=true]", "needs first_order=False"),
    ],
)
def test_bad_variants_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_algorithm(text)


def test_every_preset_documents_its_paper() -> None:
    for name in ALGORITHMS:
        spec = ALGORITHMS.get(name)
        assert spec.reference, f"{name} has no reference"
        assert isinstance(spec, AlgorithmSpec)


# -- Reptile and inner Adam ----------------------------------------------------------------------


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


def test_inner_adam_matches_torch_optim_adam_with_beta1_zero() -> None:
    learner = make_learner("reptile[update_rule=adam]", "loop", inner_lr=0.01, inner_steps=4)
    sx, sy, _, _ = episode()
    adapted = learner.adapt(sx[:1], sy[:1]).params[0]
    model = tiny_conv()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.0, 0.999), eps=1e-8)
    for _ in range(4):
        optimiser.zero_grad()
        F.cross_entropy(model(sx[0]), sy[0]).backward()
        optimiser.step()
    for name, param in model.named_parameters():
        torch.testing.assert_close(adapted[name], param.detach())


def test_reptile_with_adam_moves_theta_toward_the_adapted_weights() -> None:
    learner = make_learner("reptile[update_rule=adam]", "batched", inner_lr=0.01, inner_steps=3)
    data = episode()
    loss, _ = learner.meta_loss(*data)
    grads = grads_of(loss, learner)
    adapted = learner.adapt(data[0], data[1])
    for (name, theta), grad in zip(learner.model.named_parameters(), grads, strict=True):
        mean_phi = adapted.task_params[name].mean(0).detach()
        torch.testing.assert_close(grad, theta.detach() - mean_phi)


# -- Meta-SGD and ANIL ---------------------------------------------------------------------------


def test_metasgd_learns_one_rate_per_parameter_element() -> None:
    learner = make_learner("metasgd", "loop", inner_lr=0.3, inner_steps=1)
    rates = learner.inner_update.rates
    for name, param in learner.model.named_parameters():
        assert rates[name.replace(".", "-")].shape == param.shape
    loss, _ = learner.meta_loss(*episode())
    loss.backward()
    head_rate = rates["head-weight"].grad
    assert head_rate is not None and head_rate.shape == learner.model.head.weight.shape
    assert head_rate.flatten().unique().numel() > 1, "elements of one tensor must differ"


def test_anil_adapts_only_the_head() -> None:
    learner = make_learner("anil", "batched", inner_lr=0.3, inner_steps=2)
    assert learner.adapt_names == ["head.weight", "head.bias"]
    sx, sy, _, _ = episode()
    adapted = learner.adapt(sx, sy).params[0]
    for name, param in learner.model.named_parameters():
        changed = not torch.equal(adapted[name], param)
        assert changed == name.startswith("head."), name


# -- MAML++: derivative-order annealing ----------------------------------------------------------


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_derivative_order_annealing_is_first_then_second_order(execution: str) -> None:
    learner = make_learner(
        "mamlpp", execution, inner_lr=0.3, inner_steps=2, first_order_iterations=10
    )
    data = episode()
    lr_of = lambda n, s: learner.inner_update.learning_rate(n, s)  # noqa: E731
    for iteration, first_order in ((9, True), (10, False)):
        assert learner.first_order_at(iteration) is first_order
        loss, _ = learner.meta_loss(*data, iteration=iteration)
        weights = learner.step_weights(iteration).tolist()
        want = reference_meta_loss(learner, data, weights, lr_of, first_order=first_order)
        for got, expected in zip(grads_of(loss, learner), grads_of(want, learner), strict=True):
            torch.testing.assert_close(got, expected)


# -- MAML++: per-step BatchNorm weights and running statistics -----------------------------------

BNRS = "mamlpp[bn_per_step_stats=true]"


def test_per_step_batch_norm_weights_refuse_more_steps_than_trained() -> None:
    learner = make_learner("mamlpp", "loop", inner_lr=0.3, inner_steps=2)
    sx, sy, qx, qy = episode()
    with pytest.raises(ValueError, match="exist for 2 inner steps"):
        learner.score_tasks(sx, sy, qx, qy, steps=3)


def test_per_step_statistics_need_a_model_that_tracks_them() -> None:
    with pytest.raises(ValueError, match="track_running_stats=True"):
        MetaLearner(tiny_conv(), BNRS, inner_steps=2)
    # a model without BatchNorm has nothing per step: MAML++ with BNRS runs on it
    MetaLearner(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), BNRS, inner_steps=2)


def stats_of(learner: MetaLearner, step: int) -> dict[str, torch.Tensor]:
    """The running statistics inner step ``step`` uses (a copy)."""
    buffers = dict(learner.model.named_buffers())
    chosen = learner.per_step.at(buffers, step)
    return {n: chosen[n].clone() for n in learner.per_step.buffer_names}


def test_running_statistics_are_collected_per_step_in_training() -> None:
    learner = make_learner(BNRS, "loop", inner_lr=0.3, inner_steps=3)
    assert learner.per_step.buffer_names, "mamlpp must keep per-step running statistics"
    before = {s: stats_of(learner, s) for s in range(3)}
    learner.meta_loss(*episode())
    after = {s: stats_of(learner, s) for s in range(3)}
    for s in range(3):
        for name in before[s]:
            assert not torch.equal(before[s][name], after[s][name]), (s, name)
    first = "features.block2.norm.running_mean"
    assert not torch.equal(after[1][first], after[2][first]), "steps share their statistics"


@pytest.mark.parametrize("execution", ["loop", "auto"])
def test_evaluation_normalises_each_step_with_its_own_running_statistics(execution: str) -> None:
    learner = make_learner(BNRS, execution, inner_lr=0.3, inner_steps=2)
    data = episode()
    learner.meta_loss(*data)  # collect some statistics
    learner.eval()
    base = learner.score_tasks(*data).loss
    with torch.no_grad():  # disturb the statistics of step 1 only
        learner.per_step.get_buffer("stats-features-block3-norm-running_var")[0].mul_(4.0)
    moved = learner.score_tasks(*data).loss
    torch.testing.assert_close(moved[:, :2], base[:, :2])  # theta_0 and theta_1 use step 0
    assert (moved[:, 2] - base[:, 2]).abs().max() > 1e-6  # theta_2 is scored with step 1
    learner.train()  # training normalises with batch statistics: the tables do not matter
    trained = make_learner(BNRS, execution, inner_lr=0.3, inner_steps=2)
    trained.load_state_dict(learner.state_dict())
    torch.testing.assert_close(
        learner.meta_loss(*data)[0], trained.meta_loss(*data)[0], rtol=0, atol=0
    )


def test_batched_evaluation_reads_the_per_step_statistics() -> None:
    loop = make_learner(BNRS, "loop", inner_lr=0.3, inner_steps=2)
    loop.meta_loss(*episode())
    auto = make_learner(BNRS, "auto", inner_lr=0.3, inner_steps=2)
    auto.load_state_dict(loop.state_dict())
    loop.eval()
    auto.eval()
    data = episode(seed=4)
    assert auto.execution_strategy == "batched"
    torch.testing.assert_close(auto.score_tasks(*data).loss, loop.score_tasks(*data).loss)


# -- every preset learns -------------------------------------------------------------------------


class TinyNet(nn.Module):
    """A two-layer net with BatchNorm (so MAML++'s per-step tricks apply) and a ``head``."""

    def __init__(self, features: int = 8, ways: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Linear(features, 16), nn.BatchNorm1d(16, track_running_stats=True), nn.ReLU()
        )
        self.head = nn.Linear(16, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def blob_tasks(iterations: int, tasks: int = 8, ways: int = 3, seed: int = 0):
    """Tasks of Gaussian blobs with fresh class centres: learnable only by fast adaptation."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(iterations):
        centres = 2 * torch.randn(tasks, ways, 1, 8, generator=g)
        sx = (centres + 0.5 * torch.randn(tasks, ways, 2, 8, generator=g)).flatten(1, 2)
        qx = (centres + 0.5 * torch.randn(tasks, ways, 4, 8, generator=g)).flatten(1, 2)
        sy = torch.arange(ways).repeat_interleave(2).repeat(tasks, 1)
        qy = torch.arange(ways).repeat_interleave(4).repeat(tasks, 1)
        yield sx, sy, qx, qy


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_a_few_iterations_of_every_preset_lower_the_query_loss(name: str) -> None:
    torch.manual_seed(0)
    lr = 0.05 if ALGORITHMS.get(name).update_rule == "adam" else 0.3
    learner = MetaLearner(TinyNet(), name, inner_lr=lr, inner_steps=2, first_order_iterations=20)
    optimiser = torch.optim.Adam(learner.parameters(), lr=0.01)
    losses = fit(learner, blob_tasks(60), optimiser, iterations=60, progress=False)
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10, losses


def test_forcing_batched_execution_with_per_step_statistics_is_a_clear_error() -> None:
    model = tiny_conv(track_running_stats=True)
    with pytest.raises(ValueError, match=r"execution='auto'.*mamlpp\[bn_per_step_stats=false\]"):
        MetaLearner(model, BNRS, inner_steps=2, execution="batched")
