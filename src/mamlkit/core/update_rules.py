"""Inner-loop update rules: how adapted parameters follow from the support-set gradients.

Each rule is a small ``nn.Module`` whose own parameters (if any) are learned by the outer loop:

* ``fixed``: one scalar learning rate, not learned (MAML, FOMAML).
* ``per_tensor``: one learned learning rate per parameter tensor, shared by all steps
  (the seed document's ``alpha`` per parameter).
* ``per_tensor_per_step``: one learned learning rate per parameter tensor *and* inner step
  (MAML++'s LSLR, "learning per-layer per-step learning rates").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]

UPDATE_RULES = ("fixed", "per_tensor", "per_tensor_per_step")


def check_learning_rate(lr: float) -> float:
    """A finite, positive float learning rate, or a ``ValueError`` that says what is wrong."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f"inner_lr must be a number, got {lr!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"inner_lr must be a finite number > 0, got {lr!r}")
    return float(lr)


def _key(name: str) -> str:
    # nn.ParameterDict keys cannot contain "."; "-" cannot occur in a PyTorch attribute name.
    return name.replace(".", "-")


class InnerUpdate(nn.Module):
    """Gradient-descent step ``theta_i <- theta_i - lr(i, step) * g_i`` on the adapting tensors."""

    def __init__(self, names: Sequence[str], lr: float, steps: int) -> None:
        super().__init__()
        self.names = tuple(names)
        self.initial_lr = check_learning_rate(lr)
        self.steps = steps

    def learning_rate(self, name: str, step: int) -> Tensor | float:
        raise NotImplementedError

    def forward(self, params: Params, grads: Params, step: int) -> Params:
        """Return a new parameter dict; tensors without a gradient entry are carried over."""
        updated = dict(params)
        for name, grad in grads.items():
            updated[name] = params[name] - self.learning_rate(name, step) * grad
        return updated

    def learned_rates(self) -> dict[str, list[float]]:
        """The current learning rates by parameter name (one value per step where they differ)."""
        with torch.no_grad():
            return {
                name: [float(self.learning_rate(name, step)) for step in range(self.steps)]
                for name in self.names
            }


class FixedLR(InnerUpdate):
    """One constant learning rate for every tensor and step (not learned)."""

    def learning_rate(self, name: str, step: int) -> float:
        return self.initial_lr


class PerTensorLR(InnerUpdate):
    """A learned learning rate per parameter tensor, shared by all inner steps."""

    def __init__(self, names: Sequence[str], lr: float, steps: int) -> None:
        super().__init__(names, lr, steps)
        self.rates = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.tensor(self.initial_lr)) for n in self.names}
        )

    def learning_rate(self, name: str, step: int) -> Tensor:
        return self.rates[_key(name)]


class PerTensorPerStepLR(InnerUpdate):
    """MAML++'s LSLR: a learned learning rate per parameter tensor and inner step."""

    def __init__(self, names: Sequence[str], lr: float, steps: int) -> None:
        super().__init__(names, lr, steps)
        self.rates = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.full((steps,), self.initial_lr)) for n in self.names}
        )

    def learning_rate(self, name: str, step: int) -> Tensor:
        if step >= self.steps:
            raise ValueError(
                f"learned per-step inner learning rates exist for {self.steps} steps; "
                f"step {step + 1} has none (adapt with at most {self.steps} inner steps)"
            )
        return self.rates[_key(name)][step]


def make_update_rule(rule: str, names: Sequence[str], lr: float, steps: int) -> InnerUpdate:
    """Build the update rule called ``rule`` (one of :data:`UPDATE_RULES`)."""
    classes = {
        "fixed": FixedLR,
        "per_tensor": PerTensorLR,
        "per_tensor_per_step": PerTensorPerStepLR,
    }
    if rule not in classes:
        raise ValueError(f"unknown inner update rule {rule!r}; choose one of {UPDATE_RULES}")
    return classes[rule](names, lr, steps)
