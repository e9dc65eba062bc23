"""Meta-SGD: one learned inner rate per parameter element."""

from __future__ import annotations

from tests.helpers.conv4_reference import episode, make_learner


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
