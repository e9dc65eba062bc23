"""Inner-loop update rules: how adapted parameters follow from the support-set gradients.

Each rule is a small ``nn.Module`` whose own parameters (if any) are learned by the outer loop:

* ``fixed``: one scalar learning rate, not learned (MAML, FOMAML).
* ``per_tensor``: one learned learning rate per parameter tensor, shared by all steps.
* ``per_tensor_per_step``: one learned learning rate per parameter tensor *and* inner step
  (MAML++'s LSLR, "learning per-layer per-step learning rates").
* ``per_element``: a learned learning rate for every element of every adapting tensor, shared by
  all steps (Meta-SGD, Li et al. 2017: the rate is a tensor of the parameter's shape).
* ``adam``: inner Adam with ``beta1 = 0`` (Nichol et al. 2018 use it for Reptile), not learned;
  its moment estimates live in a per-adaptation ``state`` that :func:`~mamlkit.core.adapt`
  threads through the steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mamlkit.registry import Registry
from mamlkit.vocabulary import Params, table_key


def check_learning_rate(lr: float) -> float:
    """A finite, positive float learning rate, or a ``ValueError`` that says what is wrong."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f"inner_lr must be a number, got {lr!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"inner_lr must be a finite number > 0, got {lr!r}")
    return float(lr)


class InnerUpdate(nn.Module):
    """Gradient-descent step ``theta_i <- theta_i - lr(i, step) * g_i`` on the adapting tensors.

    The base of every update rule. A rule is called as ``rule(params, grads, step, state)`` and
    returns new parameters without modifying its inputs, so the step can be differentiated
    through (second-order MAML). Subclasses say what ``lr(i, step)`` is in
    :meth:`learning_rate`; a rule that learns its rates says their starting tensor in
    :meth:`initial_rate`, and they become its ``rates`` parameters, which
    :class:`~mamlkit.MetaLearner` includes in its ``parameters()`` for the outer optimiser.

    Args:
        names: the parameter names that adapt (the only ones with learning rates).
        lr: the (initial) learning rate, a finite number > 0.
        steps: inner steps; per-step rules hold a rate for each.
        shapes: parameter name -> shape, for rules with a rate per element.

    >>> import torch
    >>> from mamlkit.core import make_update_rule
    >>> rule = make_update_rule("per_tensor_per_step", ["w"], lr=0.5, steps=2)
    >>> rule.learned_rates(), [name for name, _ in rule.named_parameters()]
    ({'w': [0.5, 0.5]}, ['rates.w'])
    >>> params = {"w": torch.tensor([1.0]), "b": torch.tensor([3.0])}
    >>> rule(params, {"w": torch.tensor([2.0])}, step=1)  # b has no gradient: carried over
    {'w': tensor([0.], grad_fn=<SubBackward0>), 'b': tensor([3.])}
    """

    #: Whether the rule has learning rates of its own for the outer loop to learn.
    learns = False

    def __init__(
        self,
        names: Sequence[str],
        lr: float,
        steps: int,
        shapes: dict[str, torch.Size] | None = None,
    ) -> None:
        super().__init__()
        self.names = tuple(names)
        self.initial_lr = check_learning_rate(lr)
        self.steps = steps
        if self.learns:
            self.rates = nn.ParameterDict(
                {table_key(n): nn.Parameter(self.initial_rate(n, shapes)) for n in self.names}
            )

    def initial_rate(self, name: str, shapes: dict[str, torch.Size] | None) -> Tensor:
        """The starting value of the learned rate(s) of tensor ``name`` (rules that learn)."""
        raise NotImplementedError

    def learning_rate(self, name: str, step: int) -> Tensor | float:
        """The learning rate of tensor ``name`` at inner step ``step`` (0-based); a tensor when
        it is learned, so the outer loop gets its gradient through the update."""
        raise NotImplementedError

    def initial_state(self) -> dict[str, Tensor]:
        """The optimiser state an adaptation starts from (empty: plain gradient descent)."""
        return {}

    def forward(
        self, params: Params, grads: Params, step: int, state: dict[str, Tensor] | None = None
    ) -> Params:
        """Return a new parameter dict; tensors without a gradient entry are carried over.

        ``state`` (from :meth:`initial_state`) carries optimiser moments from step to step; the
        rules here that need one replace its entries with new tensors (nothing is modified in
        place, so second-order gradients flow through it).
        """
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
        """``lr`` for every tensor and step."""
        return self.initial_lr


class PerTensorLR(InnerUpdate):
    """A learned learning rate per parameter tensor, shared by all inner steps."""

    learns = True

    def initial_rate(self, name: str, shapes: dict[str, torch.Size] | None) -> Tensor:
        """One scalar rate, ``lr`` at the start."""
        return torch.tensor(self.initial_lr)

    def learning_rate(self, name: str, step: int) -> Tensor:
        """The learned scalar rate of tensor ``name`` (the same at every step)."""
        return self.rates[table_key(name)]


class PerTensorPerStepLR(InnerUpdate):
    """MAML++'s LSLR: a learned learning rate per parameter tensor and inner step."""

    learns = True

    def initial_rate(self, name: str, shapes: dict[str, torch.Size] | None) -> Tensor:
        """``lr`` for each of the ``steps`` inner steps."""
        return torch.full((self.steps,), self.initial_lr)

    def learning_rate(self, name: str, step: int) -> Tensor:
        """The learned scalar rate of tensor ``name`` at ``step``; a step beyond the ``steps``
        the rule was built for has none (a ``ValueError``)."""
        if step >= self.steps:
            raise ValueError(
                f"learned per-step inner learning rates exist for {self.steps} inner steps; "
                f"step {step + 1} has none (adapt with at most {self.steps} inner steps)"
            )
        return self.rates[table_key(name)][step]


class PerElementLR(InnerUpdate):
    """Meta-SGD: a learned learning rate for every element of every adapting tensor.

    Li et al. (2017) initialise the rates at random in [0.005, 0.1]; here every rate starts at
    ``lr`` so that Meta-SGD starts from exactly MAML's inner update and the two compare cleanly.
    """

    learns = True

    def initial_rate(self, name: str, shapes: dict[str, torch.Size] | None) -> Tensor:
        """``lr`` for every element of tensor ``name`` (its shape from ``shapes``)."""
        if shapes is None:
            raise ValueError("the per_element update rule needs the parameter shapes")
        return torch.full(shapes[name], self.initial_lr)

    def learning_rate(self, name: str, step: int) -> Tensor:
        """The learned rates of tensor ``name``: a tensor of its shape (the same at every step)."""
        return self.rates[table_key(name)]

    def learned_rates(self) -> dict[str, list[float]]:
        """Mean rate per tensor (the full tensors are in ``state_dict()``)."""
        with torch.no_grad():
            return {n: [float(self.rates[table_key(n)].mean())] * self.steps for n in self.names}


class InnerAdam(InnerUpdate):
    """Adam in the inner loop, ``beta1 = 0`` by default (Nichol et al. 2018, Reptile), not learned.

    Step ``t`` (1-based) of every tensor: ``v <- beta2 v + (1 - beta2) g^2``, ``m <- beta1 m +
    (1 - beta1) g``, ``theta <- theta - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) +
    eps)``.
    """

    def __init__(
        self,
        names: Sequence[str],
        lr: float,
        steps: int,
        shapes: dict[str, torch.Size] | None = None,
        betas: tuple[float, float] = (0.0, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(names, lr, steps)
        self.betas = betas
        self.eps = eps

    def learning_rate(self, name: str, step: int) -> float:
        """``lr``, Adam's step size (the effective step also depends on the moments)."""
        return self.initial_lr

    def forward(
        self, params: Params, grads: Params, step: int, state: dict[str, Tensor] | None = None
    ) -> Params:
        """One Adam step; ``state`` (required, from :meth:`initial_state`, empty at step 0)
        receives the new moment estimates ``m:<name>`` and ``v:<name>`` of every tensor."""
        if state is None:
            raise ValueError("inner Adam needs the state from initial_state() at every step")
        beta1, beta2 = self.betas
        t = step + 1
        updated = dict(params)
        for name, grad in grads.items():
            m, v = (1 - beta1) * grad, (1 - beta2) * grad**2
            if t > 1:
                m = m + beta1 * state[f"m:{name}"]
                v = v + beta2 * state[f"v:{name}"]
            state[f"m:{name}"], state[f"v:{name}"] = m, v
            m_hat = m / (1 - beta1**t)
            v_hat = v / (1 - beta2**t)
            updated[name] = params[name] - self.initial_lr * m_hat / (v_hat.sqrt() + self.eps)
        return updated


#: The inner update rules by name (an algorithm's ``update_rule`` setting): ``fixed``,
#: ``per_tensor``, ``per_tensor_per_step`` (LSLR), ``per_element`` (Meta-SGD) and ``adam``. A rule
#: registered here is usable in every algorithm spec and variant.
UPDATE_RULES: Registry[type[InnerUpdate]] = Registry("inner update rule")
UPDATE_RULES.add("fixed", FixedLR)
UPDATE_RULES.add("per_tensor", PerTensorLR)
UPDATE_RULES.add("per_tensor_per_step", PerTensorPerStepLR)
UPDATE_RULES.add("per_element", PerElementLR)
UPDATE_RULES.add("adam", InnerAdam)


def make_update_rule(
    rule: str,
    names: Sequence[str],
    lr: float,
    steps: int,
    shapes: dict[str, torch.Size] | None = None,
) -> InnerUpdate:
    """Build the update rule called ``rule`` (an entry of :data:`UPDATE_RULES`).

    ``shapes`` (parameter name -> shape) is needed by ``per_element`` only. This is how
    :class:`~mamlkit.MetaLearner` builds the rule of its algorithm's ``update_rule``.

    >>> import torch
    >>> from mamlkit.core import make_update_rule
    >>> rule = make_update_rule("fixed", ["w"], lr=0.5, steps=1)
    >>> rule({"w": torch.tensor([1.0])}, {"w": torch.tensor([2.0])}, step=0)
    {'w': tensor([0.])}
    >>> list(rule.parameters())  # fixed: nothing to learn
    []
    >>> adam = make_update_rule("adam", ["w"], lr=0.1, steps=2)
    >>> state = adam.initial_state()
    >>> adam({"w": torch.tensor([1.0])}, {"w": torch.tensor([2.0])}, 0, state), sorted(state)
    ({'w': tensor([0.9000])}, ['m:w', 'v:w'])
    >>> make_update_rule("per_element", ["w"], 0.5, 1, {"w": torch.Size([3])}).rates["w"].shape
    torch.Size([3])
    >>> make_update_rule("sgd", ["w"], 0.5, 1)
    Traceback (most recent call last):
        ...
    mamlkit.registry.UnknownNameError: unknown inner update rule 'sgd' (known: adam, fixed, ...)
    """
    return UPDATE_RULES.get(rule)(names, lr, steps, shapes)
