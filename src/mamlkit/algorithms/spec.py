"""An algorithm is a preset of settings of the one inner loop; this is the settings type.

An :class:`AlgorithmSpec` says *what* is optimised: which parameters adapt, the update rule,
whether inner gradients are differentiated through, how the per-step query losses are weighted,
what the outer loop differentiates, and MAML++'s switches. Each setting names a component
(:mod:`mamlkit.algorithms.hooks`) registered by the file of the algorithm that introduced it.
Hyper-parameters (learning rates, step counts, batch sizes) belong to the run, not the algorithm.
Named algorithms live in :data:`ALGORITHMS`, one file each under :mod:`mamlkit.algorithms`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mamlkit.algorithms.hooks import (
    OUTER_GRADIENTS,
    STEP_LOSSES,
    SWITCHES,
    AlgorithmHooks,
    Component,
)
from mamlkit.core.update_rules import UPDATE_RULES
from mamlkit.registry import PluginError, Registry

#: The outer learning-rate schedules a run can use (an algorithm names its default one).
OUTER_LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class AlgorithmSpec:
    """The settings that define a gradient-based meta-learner.

    Attributes:
        name: registry name (a variant written ``"mamlpp[bn_per_step_stats=false]"`` keeps that
            full text as its name).
        first_order: detach inner gradients (FOMAML-style meta-gradient, no second derivatives).
        update_rule: ``fixed`` (SGD), ``per_tensor``, ``per_tensor_per_step`` (MAML++'s LSLR),
            ``per_element`` (Meta-SGD) or ``adam`` (inner Adam, not learned; for Reptile): an
            entry of :data:`mamlkit.core.UPDATE_RULES`.
        step_loss: ``last`` (query loss after the final step) or ``msl`` (MAML++ multi-step
            loss): an entry of :data:`~mamlkit.algorithms.hooks.STEP_LOSSES`.
        adapt: glob patterns over parameter names (``"*"``: all; ``"head.*"``: only the head); a
            pattern starting with ``!`` excludes (``("*", "!head.*")``: all but the head).
            Parameters that match a pattern and no exclusion adapt in the inner loop; the
            others are only meta-learned.
        outer_gradient: ``meta`` (gradient of the query loss after adaptation) or ``reptile``
            (theta minus the adapted weights; the query set is then only scored): an entry of
            :data:`~mamlkit.algorithms.hooks.OUTER_GRADIENTS`.
        derivative_annealing: MAML++: first-order meta-gradients for the first
            ``first_order_iterations`` outer iterations, second order after.
        bn_per_step_weights: MAML++'s BNWB: BatchNorm scales and shifts get one copy per inner
            step; they are meta-learned and do not adapt.
        bn_per_step_stats: MAML++'s BNRS: BatchNorm running statistics are collected per inner
            step during meta-training and normalise each step at evaluation (the model's
            BatchNorm layers must track running statistics).
        outer_lr_schedule: the outer learning-rate schedule a run uses unless told otherwise:
            ``constant`` or ``cosine`` (MAML++'s cosine annealing of the meta learning rate).
        reference: the paper the preset follows.

    The three MAML++ switches are implemented in :mod:`mamlkit.algorithms.mamlpp`, the
    ``reptile`` outer gradient in :mod:`mamlkit.algorithms.reptile`. Construction checks every
    setting and the combinations that cannot work (e.g. Reptile with a learned inner learning
    rate), so a bad spec fails when it is written, not during training.

    >>> from mamlkit import AlgorithmSpec
    >>> spec = AlgorithmSpec("head-only", adapt=("head.*",), update_rule="per_tensor")
    >>> spec.adapting(["features.block1.conv.weight", "head.weight", "head.bias"])
    ['head.weight', 'head.bias']
    >>> AlgorithmSpec("body-only", adapt=("*", "!head.*")).adapting(["features.w", "head.w"])
    ['features.w']
    >>> spec.replace(first_order=True).first_order
    True
    >>> AlgorithmSpec("bad", outer_gradient="reptile")
    Traceback (most recent call last):
        ...
    ValueError: reptile never differentiates through the inner loop: set first_order=True
    """

    name: str
    first_order: bool = False
    update_rule: str = "fixed"
    step_loss: str = "last"
    adapt: tuple[str, ...] = ("*",)
    outer_gradient: str = "meta"
    derivative_annealing: bool = False
    bn_per_step_weights: bool = False
    bn_per_step_stats: bool = False
    outer_lr_schedule: str = "constant"
    reference: str = ""

    def __post_init__(self) -> None:
        choices: dict[str, Any] = {
            "update_rule": UPDATE_RULES,
            "step_loss": STEP_LOSSES,
            "outer_gradient": OUTER_GRADIENTS,
            "outer_lr_schedule": OUTER_LR_SCHEDULES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"{key} {getattr(self, key)!r}: choose one of {', '.join(allowed)}"
                )
        for key in BOOLEAN_SETTINGS:
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be True or False, got {getattr(self, key)!r}")
        if (
            isinstance(self.adapt, str)
            or not self.adapt
            or all(pattern.startswith("!") for pattern in self.adapt)
        ):
            raise ValueError(
                "adapt must be a non-empty tuple of glob patterns with at least one that is not "
                f"an exclusion ('!...'), got {self.adapt!r}"
            )
        for component in self.components():
            component.check(self)

    def components(self) -> list[type[Component]]:
        """The component classes this spec's settings name (see :mod:`.hooks`)."""
        switched = [
            SWITCHES.get(key) for key in BOOLEAN_SETTINGS if getattr(self, key) and key in SWITCHES
        ]
        return [
            STEP_LOSSES.get(self.step_loss),
            OUTER_GRADIENTS.get(self.outer_gradient),
            *switched,
        ]

    def hooks(self, **options: Any) -> AlgorithmHooks:
        """The composed behaviour of this spec, with ``options`` for its components (e.g.
        ``msl_anneal_iterations`` for MAML++'s multi-step loss); what the learner consults.

        A name no registered component takes is a ``ValueError``; an option that only other
        algorithms' components take is ignored, so one run config serves every algorithm.

        >>> from mamlkit.algorithms import resolve_algorithm
        >>> resolve_algorithm("maml").hooks(msl_anneal_iterations=10).first_order_at(0)
        False
        >>> resolve_algorithm("maml").hooks(msl_aneal_iterations=10)
        Traceback (most recent call last):
            ...
        ValueError: unknown algorithm setting(s) ['msl_aneal_iterations']; settings: ...
        """
        return AlgorithmHooks.build(self, options)

    def replace(self, **changes: object) -> AlgorithmSpec:
        """A copy with some settings changed; unknown setting names are an error.

        The copy keeps ``name`` unless it is changed too (a string ``adapt`` becomes a
        one-pattern tuple), and is checked like any new spec.
        """
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"unknown algorithm setting(s) {unknown}; known: {sorted(fields)}")
        if isinstance(changes.get("adapt"), str):
            changes["adapt"] = (changes["adapt"],)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def adapting(self, names: Iterable[str]) -> list[str]:
        """The parameter names, in order, that adapt in the inner loop under ``adapt``: those
        matching a pattern and no ``!`` exclusion."""
        include = [p for p in self.adapt if not p.startswith("!")]
        exclude = [p[1:] for p in self.adapt if p.startswith("!")]
        return [
            n
            for n in names
            if any(fnmatch.fnmatchcase(n, p) for p in include)
            and not any(fnmatch.fnmatchcase(n, p) for p in exclude)
        ]

    def settings(self) -> dict[str, object]:
        """Every setting except ``name`` and ``reference`` (what ``mamlkit list`` prints).

        >>> from mamlkit.algorithms import parse_algorithm
        >>> parse_algorithm("mamlpp[derivative_annealing=false]").settings()
        ... # doctest: +NORMALIZE_WHITESPACE
        {'first_order': False, 'update_rule': 'per_tensor_per_step', 'step_loss': 'msl',
         'adapt': ('*',), 'outer_gradient': 'meta', 'derivative_annealing': False,
         'bn_per_step_weights': True, 'bn_per_step_stats': False, 'outer_lr_schedule': 'cosine'}
        """
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "reference")
        }

    @property
    def learns_inner_rates(self) -> bool:
        """Whether the update rule has learned inner learning rates (the outer loop trains
        them)."""
        return UPDATE_RULES.get(self.update_rule).learns


BOOLEAN_SETTINGS = tuple(
    f.name for f in dataclasses.fields(AlgorithmSpec) if f.type in ("bool", bool)
)


def _plugin_spec(name: str, obj: object) -> AlgorithmSpec:
    """A plug-in algorithm (entry point or ``module:attribute``) must be an :class:`AlgorithmSpec`;
    it takes the name it is used by, so runs record a name that finds it again."""
    if not isinstance(obj, AlgorithmSpec):
        raise PluginError(
            f"algorithm {name!r} is a {type(obj).__name__}, not a mamlkit.AlgorithmSpec"
        )
    return obj if obj.name == name else obj.replace(name=name)


#: The algorithm presets by name: ``maml``, ``fomaml``, ``mamlpp``, ``fomamlpp``, ``anil``,
#: ``boil``, ``metasgd`` and ``reptile`` (``mamlkit list`` prints their settings), one file each
#: in :mod:`mamlkit.algorithms`; add one with :func:`register_algorithm`, or from another package
#: through the ``mamlkit.algorithms`` entry point group.
ALGORITHMS: Registry[AlgorithmSpec] = Registry(
    "algorithm", entry_points="mamlkit.algorithms", check=_plugin_spec
)


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add a preset to :data:`ALGORITHMS` (duplicate names are rejected); returns ``spec``.

    A registered preset works everywhere a built-in one does: ``MetaLearner(model, name)``,
    ``TrainConfig(algorithm=name)``, variants ``name[setting=value]`` and ``mamlkit list``. The
    registry is global to the process, and a name can be taken only once.

    >>> from mamlkit import AlgorithmSpec, register_algorithm
    >>> register_algorithm(AlgorithmSpec("maml"))
    Traceback (most recent call last):
        ...
    ValueError: algorithm 'maml' is already registered; pick another name

    Registering a new preset (not run here, as it would change the process's registry):

    >>> from mamlkit import Conv4, MetaLearner
    >>> anil_lr = AlgorithmSpec("anil-lr", adapt=("head.*",), update_rule="per_tensor")
    >>> register_algorithm(anil_lr)  # doctest: +SKIP
    >>> learner = MetaLearner(Conv4(), "anil-lr")  # doctest: +SKIP
    """
    return ALGORITHMS.add(spec.name, spec)


def _setting_value(key: str, text: str) -> object:
    """The typed value of ``key=text`` in a variant name (booleans are ``true``/``false``)."""
    if key in BOOLEAN_SETTINGS:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"algorithm setting {key} must be true or false, got {text!r}")
        return text.lower() == "true"
    if key == "adapt":
        return tuple(pattern.strip() for pattern in text.split("|") if pattern.strip())
    return text


def parse_algorithm(text: str) -> AlgorithmSpec:
    """A preset by name, or a variant ``"preset[setting=value,...]"`` of one.

    ``"mamlpp[bn_per_step_stats=false,derivative_annealing=false]"`` is MAML++ with two tricks
    switched off; ``"maml[adapt=head.*|features.block4.*]"`` adapts two groups (``|`` separates
    patterns). The variant keeps the full text as its name, so runs and comparisons of variants
    are told apart. Unknown settings and badly typed values are errors. Booleans are written
    ``true``/``false``; every other value is taken as text.

    >>> from mamlkit.algorithms import parse_algorithm
    >>> spec = parse_algorithm("maml[adapt=head.*|features.block4.*]")
    >>> spec.name, spec.adapt
    ('maml[adapt=head.*|features.block4.*]', ('head.*', 'features.block4.*'))
    >>> parse_algorithm("mamlpp[derivative_annealing=false]").derivative_annealing
    False
    >>> parse_algorithm("maml[first_ordr=true]")
    Traceback (most recent call last):
        ...
    ValueError: algorithm 'maml[first_ordr=true]': unknown setting 'first_ordr'; did you mean
    'first_order'? ...
    """
    text = text.strip()
    if "[" not in text:
        return ALGORITHMS.get(text)
    base, _, rest = text.partition("[")
    if not rest.endswith("]"):
        raise ValueError(f"algorithm {text!r}: a variant is written preset[setting=value,...]")
    spec = ALGORITHMS.get(base.strip())
    changes: dict[str, object] = {}
    for item in rest[:-1].split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"algorithm {text!r}: expected setting=value, got {item.strip()!r}")
        if key in ("name", "reference"):
            raise ValueError(f"algorithm {text!r}: {key} cannot be set in a variant")
        if key in changes:
            raise ValueError(f"algorithm {text!r}: setting {key} is given twice")
        if key not in spec.settings():
            close = difflib.get_close_matches(key, list(spec.settings()), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"algorithm {text!r}: unknown setting {key!r}{hint} "
                f"(settings: {', '.join(spec.settings())})"
            )
        changes[key] = _setting_value(key, value)
    return spec.replace(name=text, **changes)


def resolve_algorithm(algorithm: str | AlgorithmSpec, **overrides: object) -> AlgorithmSpec:
    """A registered preset or variant by name (or a spec as is), with ``overrides`` applied.

    What :class:`~mamlkit.MetaLearner` does with its ``algorithm`` and ``**overrides``
    arguments. Overrides keep the spec's name (a variant written ``"preset[...]"`` names them).

    >>> from mamlkit.algorithms import AlgorithmSpec, resolve_algorithm
    >>> resolve_algorithm("maml", first_order=True).first_order
    True
    >>> resolve_algorithm("mamlpp[bn_per_step_weights=false]").bn_per_step_weights
    False
    >>> resolve_algorithm(AlgorithmSpec("custom", step_loss="msl")).step_loss
    'msl'
    >>> resolve_algorithm("mam")
    Traceback (most recent call last):
        ...
    mamlkit.registry.UnknownNameError: unknown algorithm 'mam'; did you mean 'maml'? ...
    """
    spec = parse_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    return spec.replace(**overrides) if overrides else spec
