"""MAML++: MAML with six changes that make it train stably and well. All of it is in this file.

Antoniou, Edwards and Storkey, "How to train your MAML" (ICLR 2019), section 4:

1. **LSLR**, learned per-layer per-step inner learning rates: the shared update rule
   ``per_tensor_per_step`` (:class:`mamlkit.core.update_rules.PerTensorPerStepLR`).
2. **MSL**, the multi-step loss: the query losses after every inner step count, with weights
   annealed toward the last step (:func:`msl_weights`, :class:`MultiStepLoss`).
3. **DA**, derivative-order annealing: first-order meta-gradients for the first
   ``first_order_iterations`` outer iterations, second order after (:class:`DerivativeAnnealing`;
   off unless a length is given, see :data:`FIRST_ORDER_ITERATIONS`).
4. **BNWB**, per-step BatchNorm weights and biases (:class:`PerStepBatchNormWeights`) and
5. **BNRS**, per-step BatchNorm running statistics (:class:`PerStepBatchNormStats`), both held in
   the shared per-step tables (:class:`mamlkit.core.per_step.PerStepTables`).
6. **CA**, cosine annealing of the meta learning rate: the spec's ``outer_lr_schedule``.

The defaults this algorithm owns (:data:`MSL_ANNEAL_ITERATIONS`, :data:`FIRST_ORDER_ITERATIONS`,
:data:`MSL_MIN_FRACTION`) and its published Omniglot protocol (:data:`OMNIGLOT_PROTOCOL`) are
defined here and nowhere else. ``mamlpp`` is the preset; ``fomamlpp`` its first-order variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mamlkit.algorithms.hooks import STEP_LOSSES, SWITCHES, StepLoss, Switch
from mamlkit.algorithms.spec import AlgorithmSpec, register_algorithm
from mamlkit.checks import positive_int
from mamlkit.core.per_step import batch_norm_parameter_names, running_stat_names
from mamlkit.core.step_losses import last_step_weights

ANTONIOU_2019 = "Antoniou, Edwards, Storkey. How to train your MAML. ICLR 2019."

#: Multi-step loss: outer iterations until only the last step's query loss counts (the paper's
#: 10 epochs of 500 iterations).
MSL_ANNEAL_ITERATIONS = 5000
#: Multi-step loss: a non-final step keeps at least ``MSL_MIN_FRACTION / steps`` of the weight.
MSL_MIN_FRACTION = 0.03
#: Derivative-order annealing: first-order outer iterations before second order. Off (0) unless
#: asked: ``mamlpp`` is then what its name says, second-order MAML++ from the first iteration.
#: The paper's text (section 4) anneals over "the first 50 epochs" of 500 iterations (25000), but
#: its released Omniglot configs switch annealing off (-1, see :data:`OMNIGLOT_PROTOCOL`), and a
#: fixed length would make every shorter run first order throughout without saying so. A share of
#: the run is no better a default: the learner is built before, and used without, any run length,
#: and the paper gives no share its own configs use. Give ``first_order_iterations=N`` to anneal;
#: training then says how many iterations are first order when it starts.
FIRST_ORDER_ITERATIONS = 0


def msl_weights(steps: int, iteration: int, anneal_iterations: int) -> Tensor:
    """MAML++'s multi-step-loss weights at ``iteration``.

    At iteration 0 every step weighs ``1/steps``. Each non-final weight then falls linearly to its
    floor ``0.03/steps`` at ``anneal_iterations``, while the final weight grows so the sum stays 1.
    From ``anneal_iterations`` on only the last step counts, as in the paper's code (where the
    schedule is expressed in epochs of 500 iterations).

    >>> from mamlkit.algorithms.mamlpp import msl_weights
    >>> msl_weights(3, iteration=0, anneal_iterations=100)
    tensor([0.3333, 0.3333, 0.3333], dtype=torch.float64)
    >>> msl_weights(3, iteration=50, anneal_iterations=100)
    tensor([0.1667, 0.1667, 0.6667], dtype=torch.float64)
    >>> msl_weights(3, iteration=100, anneal_iterations=100)
    tensor([0., 0., 1.], dtype=torch.float64)
    """
    positive_int("inner steps", steps)
    if anneal_iterations < 0 or iteration < 0:
        raise ValueError(
            f"iteration ({iteration}) and anneal_iterations ({anneal_iterations}) must be >= 0"
        )
    if iteration >= anneal_iterations:
        return last_step_weights(steps)
    progress = iteration / anneal_iterations
    floor = MSL_MIN_FRACTION / steps
    weights = torch.full((steps,), max(1.0 / steps - progress / steps, floor), dtype=torch.float64)
    weights[-1] = min(1.0 / steps + progress * (steps - 1) / steps, 1.0 - (steps - 1) * floor)
    return weights


def _non_negative_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


@dataclass(frozen=True)
class MultiStepLoss(StepLoss):
    """``step_loss="msl"``: the multi-step loss, annealed over ``msl_anneal_iterations``.

    >>> from mamlkit.algorithms.mamlpp import MultiStepLoss
    >>> MultiStepLoss(msl_anneal_iterations=10).weights(2, iteration=5)
    tensor([0.2500, 0.7500], dtype=torch.float64)
    """

    msl_anneal_iterations: int = MSL_ANNEAL_ITERATIONS

    def __post_init__(self) -> None:
        _non_negative_int("msl_anneal_iterations", self.msl_anneal_iterations)

    def weights(self, steps: int, iteration: int) -> Tensor:
        """:func:`msl_weights` at ``iteration``."""
        return msl_weights(steps, iteration, self.msl_anneal_iterations)


@dataclass(frozen=True)
class DerivativeAnnealing(Switch):
    """``derivative_annealing=True``: first order for the first ``first_order_iterations``
    outer iterations, second order after (default :data:`FIRST_ORDER_ITERATIONS`, 0: second
    order throughout).

    A run with first-order iterations ahead is told so when it starts (:meth:`notice`). One
    that the annealing keeps first order throughout (``first_order_iterations`` at least the
    run's iterations) is warned that it never takes a second-order meta-gradient, but runs:
    an explicit length is honoured, never overruled.

    >>> from mamlkit.algorithms.mamlpp import DerivativeAnnealing
    >>> annealing = DerivativeAnnealing(first_order_iterations=100)
    >>> annealing.first_order_at(99), annealing.first_order_at(100)
    (True, False)
    >>> print(annealing.notice("mamlpp", start=0, total=1000))
    mamlpp: derivative-order annealing: the first 100 of the 1000 iterations are first order,
    the rest second order (first_order_iterations=100; set it to 0, --first-order-iterations 0,
    for second order throughout)
    >>> DerivativeAnnealing().notice("mamlpp", start=0, total=1000) is None  # off by default
    True
    """

    first_order_iterations: int = FIRST_ORDER_ITERATIONS

    def __post_init__(self) -> None:
        _non_negative_int("first_order_iterations", self.first_order_iterations)

    @classmethod
    def check(cls, spec: AlgorithmSpec) -> None:
        """Annealing goes from first to second order: a first-order spec cannot anneal."""
        if spec.first_order:
            raise ValueError(
                "derivative_annealing switches from first to second order; it needs "
                "first_order=False"
            )

    def first_order_at(self, iteration: int) -> bool:
        """First order before ``first_order_iterations``."""
        return iteration < self.first_order_iterations

    def notice(self, algorithm: str, start: int, total: int) -> str | None:
        """How many iterations are first order, while some of iterations ``start ..
        total - 1`` are; with a warning when all ``total`` are."""
        first = self.first_order_iterations
        if first <= start:
            return None
        off = "0, --first-order-iterations 0, for second order throughout"
        if first >= total:
            return (
                f"{algorithm}: derivative-order annealing makes all {total} iterations first "
                f"order (first_order_iterations={first} >= {total} iterations), so this run never "
                f"takes a second-order meta-gradient; lower first_order_iterations (to {off}), "
                "or train fomamlpp for first-order MAML++"
            )
        return (
            f"{algorithm}: derivative-order annealing: the first {first} of the {total} "
            f"iterations are first order, the rest second order (first_order_iterations={first}; "
            f"set it to {off})"
        )


@dataclass(frozen=True)
class PerStepBatchNormWeights(Switch):
    """``bn_per_step_weights=True`` (BNWB): every inner step gets its own meta-learned BatchNorm
    scales and shifts, which therefore do not adapt."""

    def per_step_parameters(self, model: nn.Module) -> list[str]:
        """The affine weights and biases of the model's BatchNorm layers."""
        return batch_norm_parameter_names(model)


@dataclass(frozen=True)
class PerStepBatchNormStats(Switch):
    """``bn_per_step_stats=True`` (BNRS): BatchNorm running statistics are collected per inner
    step during meta-training and normalise each step at evaluation.

    The paper's code collects them but always normalises with batch statistics, so there they
    never change an output; normalising with them at evaluation, as the paper describes, left
    MAML++ at chance on the quick comparison, hence off by default (docs/algorithms/mamlpp.md).
    """

    def per_step_buffers(self, model: nn.Module) -> list[str]:
        """The running means and variances (the model must track them)."""
        return running_stat_names(model)

    def model_options(self) -> dict[str, Any]:
        """Models built for it track running statistics."""
        return {"track_running_stats": True}

    def refusal(self, situation: str, algorithm: str) -> str | None:
        """Updating the statistics is a side effect of each task in turn, which neither one
        batched program nor several processes can share."""
        if situation == "batched":
            return (
                "execution='batched' cannot meta-train with per-step BatchNorm running statistics "
                "(BNRS): updating them is a side effect of each task in turn; use "
                "execution='auto' (batched where it can, task by task in training) or switch "
                f"BNRS off ('{algorithm.split('[')[0]}[bn_per_step_stats=false]')"
            )
        if situation == "processes":
            return (
                f"{algorithm} collects per-step BatchNorm running statistics "
                "(bn_per_step_stats), which processes cannot share; train it without torchrun"
            )
        return None


STEP_LOSSES.add("msl", MultiStepLoss)
SWITCHES.add("derivative_annealing", DerivativeAnnealing)
SWITCHES.add("bn_per_step_weights", PerStepBatchNormWeights)
SWITCHES.add("bn_per_step_stats", PerStepBatchNormStats)

# The configs that github.com/AntreasAntoniou/HowToTrainYourMAMLPytorch's
# script_generation_tools/generate_configs.py writes for Omniglot (experiment_config/
# omniglot_maml++-omniglot_{shots}_8_0.1_64_{ways}_0.json, from experiment_template_config/
# omniglot_maml++.json): batch_size 8, 5 training and 5 evaluation steps,
# init_inner_loop_learning_rate 0.1, num_target_samples 1, meta_learning_rate 0.001
# cosine-annealed to min_learning_rate 0.00001, total_epochs 100 and multi_step_loss_num_epochs
# 10 of total_iter_per_epoch 500 iterations, num_evaluation_tasks 600,
# first_order_to_second_order_epoch -1 (no derivative-order annealing); the same for all four
# settings. (An earlier generation of configs in that repository, e.g.
# omniglot_maml++_20_way_1_shot_5_batch_norm_log_64_seed_0.json, used batch_size 16, 250 epochs
# and 20 epochs of multi-step loss; the protocol follows the batch-8 generation, which
# generate_configs.py at commit bf56437 writes.)

#: Antoniou et al.'s Omniglot protocol (every ways/shots setting): train-config values.
OMNIGLOT_PROTOCOL: dict[str, Any] = {
    "iterations": 50000,  # total_epochs 100 x total_iter_per_epoch 500
    "meta_batch": 8,
    "queries": 1,  # num_target_samples
    "inner_steps": 5,
    "inner_lr": 0.1,  # initial value of the learned per-layer per-step rates
    "msl_anneal_iterations": 5000,  # multi_step_loss_num_epochs 10 x 500
    # first_order_to_second_order_epoch -1: second order from the first epoch (their
    # few_shot_learning_system.py: use_second_order = epoch > first_order_to_second_order_epoch)
    "first_order_iterations": 0,
    "outer_lr_schedule": "cosine",
    "outer_lr_min": 1e-5,
}
#: Evaluation of that protocol: as many inner steps as in training
#: (number_of_evaluation_steps_per_iter), which the learned per-step rates require (``None``: the
#: run's own value).
OMNIGLOT_EVALUATION: dict[str, Any] = {"inner_steps": None}

_SETTINGS: dict[str, Any] = {
    "update_rule": "per_tensor_per_step",
    "step_loss": "msl",
    "bn_per_step_weights": True,
    "outer_lr_schedule": "cosine",
}

#: MAML++ as Antoniou et al. (2019) define it, with one exception: per-step running statistics
#: (BNRS) are off (see :class:`PerStepBatchNormStats`); ``mamlpp[bn_per_step_stats=true]``
#: switches them on.
SPEC = register_algorithm(
    AlgorithmSpec("mamlpp", derivative_annealing=True, reference=ANTONIOU_2019, **_SETTINGS)
)
#: First-order MAML++: the same tricks without second derivatives (so without annealing).
FIRST_ORDER_SPEC = register_algorithm(
    AlgorithmSpec(
        "fomamlpp",
        first_order=True,
        reference=ANTONIOU_2019 + " (first-order variant)",
        **_SETTINGS,
    )
)
