"""Named algorithms as presets of the inner-loop settings, in a registry that rejects duplicates.

An :class:`AlgorithmSpec` says *what* is optimised: which parameters adapt, the update rule,
whether inner gradients are differentiated through, and how the per-step query losses are weighted.
Hyper-parameters (learning rates, step counts, batch sizes) belong to the run, not the algorithm.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from mamlkit.core.update_rules import UPDATE_RULES
from mamlkit.registry import Registry

STEP_LOSSES = ("last", "msl")
OUTER_GRADIENTS = ("meta", "reptile")
OUTER_LR_SCHEDULES = ("constant", "cosine")
LEARNED_RULES = ("per_tensor", "per_tensor_per_step", "per_element")


@dataclass(frozen=True)
class AlgorithmSpec:
    """The settings that define a gradient-based meta-learner.

    Attributes:
        name: registry name (a variant written ``"mamlpp[bn_per_step_stats=false]"`` keeps that
            full text as its name).
        first_order: detach inner gradients (FOMAML-style meta-gradient, no second derivatives).
        update_rule: ``fixed`` (SGD), ``per_tensor``, ``per_tensor_per_step`` (MAML++'s LSLR),
            ``per_element`` (Meta-SGD) or ``adam`` (inner Adam, not learned; for Reptile).
        step_loss: ``last`` (query loss after the final step) or ``msl`` (MAML++ multi-step loss).
        adapt: glob patterns over parameter names (``"*"``: all; ``"head.*"``: only the head);
            parameters that match adapt in the inner loop, the others are only meta-learned.
        outer_gradient: ``meta`` (gradient of the query loss after adaptation) or ``reptile``
            (theta minus the adapted weights; the query set is then only scored).
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

    Construction checks every setting and the combinations that cannot work (e.g. Reptile with a
    learned inner learning rate), so a bad spec fails when it is written, not during training.

    >>> from mamlkit import AlgorithmSpec
    >>> spec = AlgorithmSpec("head-only", adapt=("head.*",), update_rule="per_tensor")
    >>> spec.adapting(["features.block1.conv.weight", "head.weight", "head.bias"])
    ['head.weight', 'head.bias']
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
        choices = {
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
        if isinstance(self.adapt, str) or not self.adapt:
            raise ValueError(
                f"adapt must be a non-empty tuple of glob patterns, got {self.adapt!r}"
            )
        if self.derivative_annealing and self.first_order:
            raise ValueError(
                "derivative_annealing switches from first to second order; it needs "
                "first_order=False"
            )
        if self.outer_gradient == "reptile":
            if not self.first_order:
                raise ValueError(
                    "reptile never differentiates through the inner loop: set first_order=True"
                )
            if self.update_rule in LEARNED_RULES:
                raise ValueError(
                    f"update_rule {self.update_rule!r} learns inner learning rates, but the "
                    "reptile outer gradient gives them no gradient; use fixed or adam"
                )
            if self.step_loss != "last":
                raise ValueError("the reptile outer gradient uses no query loss: step_loss='last'")

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
        """The parameter names, in order, that adapt in the inner loop under ``adapt``."""
        return [n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in self.adapt)]

    def settings(self) -> dict[str, object]:
        """Every setting except ``name`` and ``reference`` (what ``mamlkit list`` prints).

        >>> from mamlkit.core.algorithms import parse_algorithm
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


BOOLEAN_SETTINGS = tuple(
    f.name for f in dataclasses.fields(AlgorithmSpec) if f.type in ("bool", bool)
)


#: The algorithm presets by name: ``maml``, ``fomaml``, ``mamlpp``, ``fomamlpp``, ``anil``,
#: ``metasgd`` and ``reptile`` (``mamlkit list`` prints their settings); add one with
#: :func:`register_algorithm`.
ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm")


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


FINN_2017 = "Finn, Abbeel, Levine. Model-Agnostic Meta-Learning. ICML 2017."
ANTONIOU_2019 = "Antoniou, Edwards, Storkey. How to train your MAML. ICLR 2019."
RAGHU_2020 = (
    "Raghu, Raghu, Bengio, Vinyals. Rapid Learning or Feature Reuse? Towards Understanding the "
    "Effectiveness of MAML. ICLR 2020."
)
LI_2017 = "Li, Zhou, Chen, Li. Meta-SGD: Learning to Learn Quickly for Few-Shot Learning. 2017."
NICHOL_2018 = "Nichol, Achiam, Schulman. On First-Order Meta-Learning Algorithms. 2018."

#: MAML++ as Antoniou et al. (2019) define it, with one exception: per-step running statistics
#: (BNRS) are off. The paper's code collects them but always normalises with batch statistics
#: (``F.batch_norm(..., training=True)``), so there they never change an output; normalising with
#: them at evaluation, as the paper describes, left MAML++ at chance on the quick comparison
#: (docs/algorithms/mamlpp.md, "Per-step running statistics"). ``mamlpp[bn_per_step_stats=true]``
#: switches them on.
MAML_PLUS_PLUS = {
    "update_rule": "per_tensor_per_step",
    "step_loss": "msl",
    "bn_per_step_weights": True,
    "outer_lr_schedule": "cosine",
}

register_algorithm(AlgorithmSpec("maml", reference=FINN_2017))
register_algorithm(AlgorithmSpec("fomaml", first_order=True, reference=FINN_2017 + " Section 5.2"))
register_algorithm(
    AlgorithmSpec("mamlpp", derivative_annealing=True, reference=ANTONIOU_2019, **MAML_PLUS_PLUS)  # type: ignore[arg-type]
)
register_algorithm(
    AlgorithmSpec(
        "fomamlpp",
        first_order=True,
        reference=ANTONIOU_2019 + " (first-order variant)",
        **MAML_PLUS_PLUS,  # type: ignore[arg-type]
    )
)
register_algorithm(AlgorithmSpec("anil", adapt=("head.*",), reference=RAGHU_2020))
register_algorithm(AlgorithmSpec("metasgd", update_rule="per_element", reference=LI_2017))
register_algorithm(
    AlgorithmSpec("reptile", first_order=True, outer_gradient="reptile", reference=NICHOL_2018)
)


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

    >>> from mamlkit.core.algorithms import parse_algorithm
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

    >>> from mamlkit.core import AlgorithmSpec, resolve_algorithm
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
