"""The inner update rules: inner Adam is ``torch.optim.Adam`` with beta1 = 0."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.helpers.conv4_reference import episode, make_learner, tiny_conv


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
