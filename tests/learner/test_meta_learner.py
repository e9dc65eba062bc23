"""The learner's public API: presets by flag, registries, input errors, adapt and predict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mamlkit import ALGORITHMS, MAML, MetaLearner
from mamlkit.algorithms import AlgorithmSpec, register_algorithm
from mamlkit.registry import Registry, UnknownNameError
from tests.helpers.blobs import Flat, linear_tasks


@pytest.mark.parametrize(
    ("first_order", "plus_plus", "preset"),
    [
        (False, False, "maml"),
        (True, False, "fomaml"),
        (False, True, "mamlpp"),
        (True, True, "fomamlpp"),
    ],
)
def test_maml_flags_select_presets(first_order: bool, plus_plus: bool, preset: str) -> None:
    learner = MAML(
        Flat(), inner_lr=0.4, inner_steps=2, first_order=first_order, plus_plus=plus_plus
    )
    assert isinstance(learner, nn.Module)
    assert learner.algorithm == ALGORITHMS.get(preset)
    own = {id(p) for p in learner.model.parameters()}
    extra = [n for n, p in learner.named_parameters() if id(p) not in own]
    assert bool(extra) == plus_plus  # learned inner LRs are outer-optimised parameters


def test_maml_rejects_string_booleans() -> None:
    with pytest.raises(ValueError, match="first_order must be True or False"):
        MAML(Flat(), first_order="yes")  # type: ignore[arg-type]


def test_registry_rejects_duplicates_and_suggests_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm(AlgorithmSpec("maml"))
    registry: Registry[int] = Registry("thing")
    registry.add("alpha", 1)
    with pytest.raises(UnknownNameError, match="did you mean 'alpha'"):
        registry.get("alpah")
    with pytest.raises(ValueError, match="unknown algorithm 'mamlp'; did you mean"):
        MetaLearner(Flat(), "mamlp")


def test_unknown_override_and_empty_filter_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown algorithm setting"):
        MetaLearner(Flat(), "maml", learning_rule="fixed")
    with pytest.raises(ValueError, match="match no parameter"):
        MetaLearner(Flat(), "maml", adapt=("nothing.*",))


def test_adapt_filter_keeps_other_parameters_fixed() -> None:
    learner = MetaLearner(Flat(), "maml", inner_lr=0.5, adapt="head.*")
    assert learner.adapt_names == ["head.weight", "head.bias"]
    sx, sy, _, _ = linear_tasks(2)
    adapted = learner.adapt(sx, sy)
    for params in adapted.params:
        assert params["body.1.weight"] is learner.model.body[1].weight
        assert not torch.equal(params["head.weight"], learner.model.head.weight)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_inner_lr_is_rejected(lr: float) -> None:
    with pytest.raises(ValueError, match="inner_lr must be a finite number > 0"):
        MAML(Flat(), inner_lr=lr)


def test_bad_episode_inputs_have_clear_errors() -> None:
    learner = MAML(Flat(), inner_lr=0.4)
    sx, sy, qx, qy = linear_tasks(2)
    with pytest.raises(ValueError, match=r"label 5 is out of range: the model predicts 2 classes"):
        learner.meta_loss(sx, sy, qx, torch.full_like(qy, 5))
    with pytest.raises(ValueError, match="negative label"):
        learner.meta_loss(sx, sy - 1, qx, qy)
    with pytest.raises(ValueError, match="int64"):
        learner.meta_loss(sx, sy.int(), qx, qy)
    with pytest.raises(ValueError, match="task-batched"):
        learner.meta_loss(sx[0, 0], sy[0], qx, qy)
    with pytest.raises(ValueError, match="support has 2 tasks but query has 1"):
        learner.meta_loss(sx, sy, qx[:1], qy[:1])
    with pytest.raises(ValueError, match="per example but query"):
        learner.meta_loss(sx, sy, qx[..., :4], qy)


def test_adapted_tasks_predict_better_than_the_initialisation() -> None:
    torch.manual_seed(0)
    learner = MAML(Flat(), inner_lr=0.5, inner_steps=5, first_order=True)
    sx, sy, qx, qy = linear_tasks(16, seed=3)
    with torch.no_grad():
        adapted = learner.adapt(sx, sy)
        before = (learner(qx.flatten(0, 1)).argmax(-1) == qy.flatten()).float().mean()
        after = (adapted.predict(qx) == qy).float().mean()
    assert all(not p.requires_grad for params in adapted.params for p in params.values())
    assert after > before + 0.2


def test_adapt_keeps_the_graph_when_gradients_are_enabled() -> None:
    learner = MAML(Flat(), inner_lr=0.5, inner_steps=1)
    sx, sy, qx, _ = linear_tasks(2)
    logits = learner.adapt(sx, sy)(qx)
    assert logits.shape == (2, 8, 2)
    (grad,) = torch.autograd.grad(logits.sum(), [learner.model.body[1].weight])
    assert grad.abs().sum() > 0


def test_lslr_refuses_more_steps_than_it_learned() -> None:
    learner = MAML(Flat(), inner_lr=0.1, inner_steps=2, plus_plus=True)
    sx, sy, qx, qy = linear_tasks(1)
    with pytest.raises(ValueError, match="exist for 2 inner steps"):
        learner.score_tasks(sx, sy, qx, qy, steps=3)
