"""Named algorithms as presets of the inner-loop settings, in a registry that rejects duplicates.

An :class:`AlgorithmSpec` says *what* is optimised: which parameters adapt, the update rule,
whether inner gradients are differentiated through, and how the per-step query losses are weighted.
Hyper-parameters (learning rates, step counts, batch sizes) belong to the run, not the algorithm.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from mamlkit.core.update_rules import UPDATE_RULES
from mamlkit.registry import Registry

STEP_LOSSES = ("last", "msl")


@dataclass(frozen=True)
class AlgorithmSpec:
    """The settings that define a gradient-based meta-learner.

    Attributes:
        name: registry name.
        first_order: detach inner gradients (FOMAML-style meta-gradient, no second derivatives).
        update_rule: one of ``fixed``, ``per_tensor``, ``per_tensor_per_step`` (LSLR).
        step_loss: ``last`` (query loss after the final step) or ``msl`` (MAML++ multi-step loss).
        adapt: glob patterns over parameter names (``"*"``: all; ``"head.*"``: only the head);
            parameters that match adapt in the inner loop, the others are only meta-learned.
        reference: the paper the preset follows.
    """

    name: str
    first_order: bool = False
    update_rule: str = "fixed"
    step_loss: str = "last"
    adapt: tuple[str, ...] = ("*",)
    reference: str = ""

    def __post_init__(self) -> None:
        if self.update_rule not in UPDATE_RULES:
            raise ValueError(f"update_rule {self.update_rule!r}: choose one of {UPDATE_RULES}")
        if self.step_loss not in STEP_LOSSES:
            raise ValueError(f"step_loss {self.step_loss!r}: choose one of {STEP_LOSSES}")
        if not isinstance(self.first_order, bool):
            raise ValueError(f"first_order must be True or False, got {self.first_order!r}")
        if isinstance(self.adapt, str) or not self.adapt:
            raise ValueError(
                f"adapt must be a non-empty tuple of glob patterns, got {self.adapt!r}"
            )

    def replace(self, **changes: object) -> AlgorithmSpec:
        """A copy with some settings changed; unknown setting names are an error."""
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


ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm")


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add a preset to :data:`ALGORITHMS` (duplicate names are rejected)."""
    return ALGORITHMS.add(spec.name, spec)


FINN_2017 = "Finn, Abbeel, Levine. Model-Agnostic Meta-Learning. ICML 2017."
ANTONIOU_2019 = "Antoniou, Edwards, Storkey. How to train your MAML. ICLR 2019."

register_algorithm(AlgorithmSpec("maml", reference=FINN_2017))
register_algorithm(AlgorithmSpec("fomaml", first_order=True, reference=FINN_2017 + " Section 5.2"))
register_algorithm(
    AlgorithmSpec(
        "mamlpp", update_rule="per_tensor_per_step", step_loss="msl", reference=ANTONIOU_2019
    )
)
register_algorithm(
    AlgorithmSpec(
        "fomamlpp",
        first_order=True,
        update_rule="per_tensor_per_step",
        step_loss="msl",
        reference=ANTONIOU_2019 + " (first-order variant)",
    )
)


def resolve_algorithm(algorithm: str | AlgorithmSpec, **overrides: object) -> AlgorithmSpec:
    """A registered preset by name (or a spec as is), with ``overrides`` applied."""
    spec = ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else algorithm
    return spec.replace(**overrides) if overrides else spec
