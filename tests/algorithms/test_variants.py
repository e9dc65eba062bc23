"""Algorithm variants (``preset[setting=value, ...]``): what they switch, clear errors for bad ones,
and a paper reference for every preset."""

from __future__ import annotations

import pytest

from mamlkit import ALGORITHMS
from mamlkit.algorithms import AlgorithmSpec, parse_algorithm


def test_a_variant_switches_settings_and_keeps_its_full_name() -> None:
    spec = parse_algorithm("mamlpp[bn_per_step_stats=true, derivative_annealing=false]")
    assert spec.name == "mamlpp[bn_per_step_stats=true, derivative_annealing=false]"
    assert spec.bn_per_step_stats and not spec.derivative_annealing
    assert spec.bn_per_step_weights and spec.update_rule == "per_tensor_per_step"
    # BNRS is opt-in (docs/algorithms/mamlpp.md)
    assert not parse_algorithm("mamlpp").bn_per_step_stats
    assert parse_algorithm("maml[adapt=head.*|features.block4.*]").adapt == (
        "head.*",
        "features.block4.*",
    )
    assert parse_algorithm("reptile[update_rule=adam]").update_rule == "adam"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mamlpp[bn_per_step_stat=false]", "did you mean 'bn_per_step_stats'"),
        ("mamlpp[bn_per_step_stats=no]", "must be true or false"),
        ("mamlpp[bn_per_step_stats=false", "preset[setting=value"),
        ("mamlpp[msl]", "expected setting=value"),
        ("maml[first_order=true,first_order=false]", "given twice"),
        ("maml[name=x]", "cannot be set"),
        ("mamlp[first_order=true]", "did you mean 'mamlpp'"),
        ("maml[update_rule=sgd]", "choose one of"),
        ("reptile[first_order=false]", "never differentiates"),
        ("reptile[update_rule=per_tensor]", "gives them no gradient"),
        ("reptile[step_loss=msl]", "uses no query loss"),
        ("fomaml[derivative_annealing=true]", "needs first_order=False"),
    ],
)
def test_bad_variants_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_algorithm(text)


def test_every_preset_documents_its_paper() -> None:
    for name in ALGORITHMS:
        spec = ALGORITHMS.get(name)
        assert spec.reference, f"{name} has no reference"
        assert isinstance(spec, AlgorithmSpec)
