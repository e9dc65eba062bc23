"""MAML++: the multi-step loss and its annealing, derivative-order annealing (off unless asked,
and announced when on), per-step BatchNorm weights and per-step running statistics (BNRS)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from mamlkit import MetaLearner, fit
from mamlkit.algorithms.mamlpp import FIRST_ORDER_ITERATIONS, msl_weights
from mamlkit.core import last_step_weights
from mamlkit.training import LoopState, TrainConfig, train_run
from tests.helpers.blobs import Flat, linear_tasks
from tests.helpers.conv4_reference import (
    EXECUTIONS,
    episode,
    grads_of,
    make_learner,
    reference_meta_loss,
    tiny_conv,
)

# -- the multi-step loss ---------------------------------------------------------------------------


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


# -- derivative-order annealing --------------------------------------------------------------------


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


def train_briefly(learner: MetaLearner, iterations: int, done: int = 0) -> list[float]:
    """``fit`` on ``iterations`` small tasks, ``done`` of them already trained."""
    batches = [linear_tasks(4, seed=s) for s in range(iterations)]
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
    return fit(learner, batches, optimizer, progress=False, state=LoopState(iteration=done))


def test_derivative_order_annealing_is_off_unless_asked() -> None:
    learner = MetaLearner(Flat(), "mamlpp", inner_lr=0.1, inner_steps=2)
    assert FIRST_ORDER_ITERATIONS == 0
    assert learner.hooks.options["first_order_iterations"] == FIRST_ORDER_ITERATIONS
    assert TrainConfig().first_order_iterations == FIRST_ORDER_ITERATIONS
    assert not any(learner.first_order_at(i) for i in range(100))  # second order throughout
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing to say about it
        train_briefly(learner, 3)


SAY_SO = r"\(first_order_iterations={}; set it to 0, --first-order-iterations 0, for second order"


@pytest.mark.parametrize(
    ("first_order_iterations", "message"),
    [
        (2, r"^mamlpp: derivative-order annealing: the first 2 of the 4 iterations are first "
            r"order, the rest second order " + SAY_SO.format(2)),
        (4, r"^mamlpp: derivative-order annealing makes all 4 iterations first order "
            r"\(first_order_iterations=4 >= 4 iterations\), so this run never takes a "
            r"second-order meta-gradient; lower first_order_iterations"),
        (25000, r"makes all 4 iterations first order \(first_order_iterations=25000 >= 4"),
    ],
)  # fmt: skip
def test_training_says_once_how_many_iterations_are_first_order(
    first_order_iterations: int, message: str
) -> None:
    learner = MetaLearner(
        Flat(), "mamlpp", inner_lr=0.1, inner_steps=2, first_order_iterations=first_order_iterations
    )
    with pytest.warns(UserWarning, match=message) as caught:
        losses = train_briefly(learner, 4)
    assert sum("derivative-order annealing" in str(w.message) for w in caught) == 1
    assert len(losses) == 4  # an explicit length is honoured, even one longer than the run


def test_a_run_resumed_after_the_first_order_iterations_is_not_told_again() -> None:
    learner = MetaLearner(Flat(), "mamlpp", inner_lr=0.1, inner_steps=2, first_order_iterations=2)
    with pytest.warns(UserWarning, match="the first 2 of the 4 iterations are first order"):
        train_briefly(learner, 4, done=1)  # one first-order iteration still to come
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_briefly(learner, 4, done=2)


def test_mamlkit_train_says_how_many_iterations_are_first_order(tmp_path: Path) -> None:
    config = TrainConfig(
        algorithm="mamlpp", dataset="sinusoid", model="mlp", hidden=4, shots=2, queries=2,
        meta_batch=2, iterations=3, first_order_iterations=1, progress=False,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="the first 1 of the 3 iterations are first order"):
        train_run(config, tmp_path / "run")


# -- per-step BatchNorm weights and running statistics ---------------------------------------------

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


def test_forcing_batched_execution_with_per_step_statistics_is_a_clear_error() -> None:
    model = tiny_conv(track_running_stats=True)
    with pytest.raises(ValueError, match=r"execution='auto'.*mamlpp\[bn_per_step_stats=false\]"):
        MetaLearner(model, BNRS, inner_steps=2, execution="batched")
