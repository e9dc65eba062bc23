"""What the learner asks of an algorithm, and the plain answers (MAML's).

An :class:`~mamlkit.algorithms.AlgorithmSpec`'s settings name *components*, each registered by
the algorithm file that introduces the behaviour:

* ``step_loss`` names a :class:`StepLoss` in :data:`STEP_LOSSES`: how much each inner step's query
  loss counts (``last`` here; MAML++'s ``msl`` in :mod:`mamlkit.algorithms.mamlpp`);
* ``outer_gradient`` names an :class:`OuterGradient` in :data:`OUTER_GRADIENTS`: what the outer
  loop differentiates (``meta`` here; ``reptile`` in :mod:`mamlkit.algorithms.reptile`);
* a boolean setting that is on switches on the :class:`Switch` registered under its name in
  :data:`SWITCHES` (MAML++'s derivative annealing and per-step BatchNorm tensors);
* ``update_rule`` names an inner update rule of :data:`mamlkit.core.UPDATE_RULES`.

:meth:`AlgorithmSpec.hooks <mamlkit.algorithms.AlgorithmSpec.hooks>` composes them into one
:class:`AlgorithmHooks`, the only thing :class:`~mamlkit.MetaLearner` consults: it never looks at
an algorithm's name or at a setting that one algorithm alone uses.

A component is a frozen dataclass; its fields are its *options* (run-length hyper-parameters such
as MAML++'s annealing lengths), with the defaults the algorithm owns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor, nn

from mamlkit.core.step_losses import last_step_weights
from mamlkit.episodes import Episode
from mamlkit.registry import Registry
from mamlkit.vocabulary import Params

if TYPE_CHECKING:
    from mamlkit.algorithms.spec import AlgorithmSpec


class TaskRun(Protocol):
    """What an outer objective may ask of the learner for a group of tasks.

    :class:`~mamlkit.MetaLearner` is one; an objective sees nothing else of it.
    """

    inner_steps: int
    adapt_names: list[str]

    def model_params(self) -> Params:
        """The model's own parameters (every task's starting point)."""
        ...

    def trajectory(
        self, support_x: Tensor, support_y: Tensor, *, keep: set[int], first_order: bool
    ) -> list[Params | None]:
        """The adapted parameters of every task after 0..K steps (``None`` at steps not kept)."""
        ...

    def query_loss(
        self,
        trajectory: list[Params | None],
        query_x: Tensor,
        query_y: Tensor,
        weights: list[float],
    ) -> tuple[Tensor, Tensor]:
        """The step-weighted query loss summed over tasks, and the final query outputs."""
        ...

    def outputs_after(self, final: Params, x: Tensor) -> Tensor:
        """Outputs of the fully adapted tasks on ``x`` (the last step's per-step tensors)."""
        ...

    def summed_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The task loss summed over tasks."""
        ...


Objective = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class Component:
    """Part of an algorithm's behaviour, switched on by one of its settings.

    Its dataclass fields are its options. :meth:`check` refuses specs the component cannot
    serve (called when a spec is built), so a bad combination fails when it is written.
    """

    @classmethod
    def check(cls, spec: AlgorithmSpec) -> None:
        """Raise a ``ValueError`` if ``spec`` combines this component with something it cannot
        work with; the default accepts every spec."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options this component takes (its dataclass fields)."""
        return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class StepLoss(Component):
    """How much each inner step's query loss counts (the ``step_loss`` setting)."""

    def weights(self, steps: int, iteration: int) -> Tensor:
        """Float64 weights ``[steps]`` of the query losses after steps 1..K at outer
        ``iteration``."""
        raise NotImplementedError


@dataclass(frozen=True)
class LastStep(StepLoss):
    """Only the query loss after the final inner step counts (MAML and most algorithms).

    >>> from mamlkit.algorithms.hooks import LastStep
    >>> LastStep().weights(3, iteration=100)
    tensor([0., 0., 1.], dtype=torch.float64)
    """

    def weights(self, steps: int, iteration: int) -> Tensor:
        """``[0, ..., 0, 1]`` at every iteration."""
        return last_step_weights(steps)


@dataclass(frozen=True)
class OuterGradient(Component):
    """What the outer loop differentiates for a group of tasks (the ``outer_gradient`` setting).

    :meth:`objective` takes a group of tasks (an :class:`~mamlkit.episodes.Episode`), the weights
    of the query losses after each inner step and whether to differentiate first order; it
    returns the tensor to backpropagate (summed over the tasks), the query loss summed over the
    tasks (detached, for metrics) and the query outputs after adaptation (detached, for
    accuracy).
    """

    def objective(
        self,
        run: TaskRun,
        episode: Episode,
        weights: list[float],
        first_order: bool,
    ) -> Objective:
        """The objective of these tasks; see the class docstring."""
        raise NotImplementedError


@dataclass(frozen=True)
class MetaGradient(OuterGradient):
    """The meta-gradient: the step-weighted query loss after adaptation, differentiated through
    the inner loop (or at the adapted weights, first order)."""

    def objective(
        self,
        run: TaskRun,
        episode: Episode,
        weights: list[float],
        first_order: bool,
    ) -> Objective:
        """The weighted query loss; only the steps whose query loss counts are kept."""
        keep = {index + 1 for index, weight in enumerate(weights) if weight != 0}
        trajectory = run.trajectory(
            episode.support_x, episode.support_y, keep=keep, first_order=first_order
        )
        total, outputs = run.query_loss(trajectory, episode.query_x, episode.query_y, weights)
        return total, total.detach(), outputs


@dataclass(frozen=True)
class Switch(Component):
    """The effect of a boolean algorithm setting when it is on (registered under its name).

    Every hook defaults to "no effect".
    """

    def first_order_at(self, iteration: int) -> bool:
        """Whether this switch makes the meta-gradient first order at outer ``iteration``."""
        return False

    def per_step_parameters(self, model: nn.Module) -> list[str]:
        """Parameters that get one meta-learned copy per inner step (and do not adapt)."""
        return []

    def per_step_buffers(self, model: nn.Module) -> list[str]:
        """Buffers that get one copy per inner step."""
        return []

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments the model factory must get (where it takes them)."""
        return {}

    def refusal(self, situation: str, algorithm: str) -> str | None:
        """Why ``algorithm`` (its name) cannot run with this switch in ``situation``
        (``"batched"``: execution forced to the batched program; ``"processes"``: training
        split over torchrun processes), or ``None``."""
        return None

    def notice(self, algorithm: str, start: int, total: int) -> str | None:
        """What a user should be told, once, before ``algorithm`` (its name) trains outer
        iterations ``start .. total - 1`` of a ``total``-iteration run, or ``None``."""
        return None


#: Step losses by name (the ``step_loss`` setting): ``last`` (:class:`LastStep`) and MAML++'s
#: ``msl``.
STEP_LOSSES: Registry[type[StepLoss]] = Registry("step loss")
STEP_LOSSES.add("last", LastStep)

#: Outer gradients by name (the ``outer_gradient`` setting): ``meta`` (:class:`MetaGradient`)
#: and ``reptile``.
OUTER_GRADIENTS: Registry[type[OuterGradient]] = Registry("outer gradient")
OUTER_GRADIENTS.add("meta", MetaGradient)

#: Switches by the name of the boolean setting that turns them on: MAML++'s
#: ``derivative_annealing``, ``bn_per_step_weights`` and ``bn_per_step_stats``.
SWITCHES: Registry[type[Switch]] = Registry("switch")


def known_options() -> dict[str, str]:
    """Every option some registered component takes, with the component's name.

    >>> from mamlkit.algorithms.hooks import known_options
    >>> sorted(known_options())
    ['first_order_iterations', 'msl_anneal_iterations']
    """
    known: dict[str, str] = {}
    for registry in (STEP_LOSSES, OUTER_GRADIENTS, SWITCHES):
        for name in registry:
            for option in registry.get(name).option_names():
                known.setdefault(option, f"{registry.kind} {name!r}")
    return known


def _build(cls: type[Component], options: Mapping[str, Any]) -> Any:
    return cls(**{k: v for k, v in options.items() if k in cls.option_names()})


@dataclass(frozen=True)
class AlgorithmHooks:
    """An algorithm's components, composed: everything the learner asks of an algorithm.

    Built by :meth:`AlgorithmSpec.hooks <mamlkit.algorithms.AlgorithmSpec.hooks>`.

    >>> from mamlkit.algorithms import resolve_algorithm
    >>> hooks = resolve_algorithm("mamlpp").hooks(first_order_iterations=10)
    >>> hooks.first_order_at(9), hooks.first_order_at(10)
    (True, False)
    >>> hooks.step_weights(2, iteration=0)
    tensor([0.5000, 0.5000], dtype=torch.float64)
    >>> hooks.options["msl_anneal_iterations"]  # MAML++'s default
    5000
    """

    spec: AlgorithmSpec
    step_loss: StepLoss
    outer_gradient: OuterGradient
    switches: tuple[Switch, ...]

    @classmethod
    def build(cls, spec: AlgorithmSpec, options: Mapping[str, Any]) -> AlgorithmHooks:
        """The components ``spec``'s settings name (:meth:`AlgorithmSpec.components`), given
        ``options``: a name that is neither a setting nor an option any registered component
        takes is a ``ValueError``; an option only other algorithms take is ignored."""
        known = known_options()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"unknown algorithm setting(s) {unknown}; settings: "
                f"{', '.join(spec.settings())}; options: {', '.join(sorted(known))}"
            )
        step_loss, outer_gradient, *switches = spec.components()
        return cls(
            spec,
            _build(step_loss, options),
            _build(outer_gradient, options),
            tuple(_build(switch, options) for switch in switches),
        )

    @property
    def components(self) -> tuple[Component, ...]:
        """Every component in effect."""
        return (self.step_loss, self.outer_gradient, *self.switches)

    @property
    def options(self) -> dict[str, Any]:
        """The option values in effect (defaults included), by name."""
        return {f.name: getattr(c, f.name) for c in self.components for f in dataclasses.fields(c)}

    def step_weights(self, steps: int, iteration: int) -> Tensor:
        """Weights of the query loss after each of ``steps`` inner steps at ``iteration``."""
        return self.step_loss.weights(steps, iteration)

    def first_order_at(self, iteration: int) -> bool:
        """Whether the meta-gradient is first order at outer ``iteration``."""
        return self.spec.first_order or any(s.first_order_at(iteration) for s in self.switches)

    def per_step_parameters(self, model: nn.Module) -> list[str]:
        """Parameters with one meta-learned copy per inner step."""
        return _joined(s.per_step_parameters(model) for s in self.switches)

    def per_step_buffers(self, model: nn.Module) -> list[str]:
        """Buffers with one copy per inner step."""
        return _joined(s.per_step_buffers(model) for s in self.switches)

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments the model factory must get, where it takes them."""
        merged: dict[str, Any] = {}
        for switch in self.switches:
            merged.update(switch.model_options())
        return merged

    def refusal(self, situation: str) -> str | None:
        """Why the algorithm cannot run in ``situation`` (see :meth:`Switch.refusal`), or
        ``None``."""
        name = self.spec.name
        return next((r for s in self.switches if (r := s.refusal(situation, name))), None)

    def notices(self, start: int, total: int) -> list[str]:
        """What to tell the user before training outer iterations ``start .. total - 1`` of a
        ``total``-iteration run (see :meth:`Switch.notice`); :func:`mamlkit.fit` warns with
        each."""
        name = self.spec.name
        return [n for s in self.switches if (n := s.notice(name, start, total)) is not None]

    def objective(
        self,
        run: TaskRun,
        episode: Episode,
        weights: list[float],
        first_order: bool,
    ) -> Objective:
        """The outer objective of a group of tasks (see :class:`OuterGradient`)."""
        return self.outer_gradient.objective(run, episode, weights, first_order)


def _joined(parts: Iterable[list[str]]) -> list[str]:
    names: list[str] = []
    for part in parts:
        names += [n for n in part if n not in names]
    return names


__all__ = [
    "OUTER_GRADIENTS",
    "STEP_LOSSES",
    "SWITCHES",
    "AlgorithmHooks",
    "Component",
    "LastStep",
    "MetaGradient",
    "OuterGradient",
    "StepLoss",
    "Switch",
    "TaskRun",
    "known_options",
]
