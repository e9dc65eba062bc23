"""ANIL: only the head adapts in the inner loop."""

from __future__ import annotations

import torch

from tests.helpers.conv4_reference import episode, make_learner


def test_anil_adapts_only_the_head() -> None:
    learner = make_learner("anil", "batched", inner_lr=0.3, inner_steps=2)
    assert learner.adapt_names == ["head.weight", "head.bias"]
    sx, sy, _, _ = episode()
    adapted = learner.adapt(sx, sy).params[0]
    for name, param in learner.model.named_parameters():
        changed = not torch.equal(adapted[name], param)
        assert changed == name.startswith("head."), name
