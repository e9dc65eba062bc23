"""The inner loop (:func:`mamlkit.core.adapt`): one step is twice differentiable, and the weights
of the steps not kept are freed."""

from __future__ import annotations

import weakref

import torch
from torch import nn

from mamlkit import Conv4
from mamlkit.core import adapt, functional_forward, make_update_rule


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


def test_adapt_frees_the_weights_of_steps_not_kept() -> None:
    torch.manual_seed(0)
    model = Conv4(1, 5, hidden=4, image_size=16)
    names = [n for n, _ in model.named_parameters()]
    update = make_update_rule("fixed", names, 0.1, 4)
    made: list[weakref.ref] = []

    class TrackingUpdate(type(update)):  # the same rule, recording every tensor it makes
        def forward(self, params, grads, step, state=None):
            out = super().forward(params, grads, step, state)
            made.append(weakref.ref(out[names[0]]))
            return out

    tracking_update = TrackingUpdate(names, 0.1, 4)

    x, y = torch.rand(10, 1, 16, 16), torch.arange(5).repeat(2)
    params = dict(model.named_parameters())
    common = {"update": tracking_update, "steps": 4, "first_order": True, "names": names}
    full = adapt(functional_forward(model), params, x, y, **common)
    made.clear()
    kept = adapt(functional_forward(model), params, x, y, keep={2}, **common)
    assert [p is None for p in kept] == [True, True, False, True, False]
    for step in (2, 4):
        torch.testing.assert_close(kept[step][names[0]], full[step][names[0]])
    alive = [ref() is not None for ref in made]  # theta_1 .. theta_4
    assert alive == [False, True, False, True], "first-order weights of dropped steps stay alive"
