"""Reptile: move the initialisation toward the weights a few SGD steps on each task reach.

Nichol, Achiam and Schulman (2018). First order and without a query loss: after K inner steps on
a task's support set, reaching ``phi``, the outer gradient is ``theta - phi`` (averaged over the
tasks). :class:`ReptileGradient` computes it as the gradient of the surrogate
``0.5 * ||theta - stopgrad(phi)||^2``, so Reptile trains through the same ``meta_loss`` /
``meta_backward`` / ``fit`` path as every other algorithm; the query set is only scored. Its
inner loop may use plain SGD (the preset) or Adam with ``beta1 = 0`` (``update_rule=adam``, the
shared :class:`mamlkit.core.update_rules.InnerAdam`), as in the paper.

No published protocol here: Nichol et al.'s Omniglot commands (github.com/openai/supervised-reptile)
use an inner Adam with mini-batches, more training shots than test shots and a linearly annealed
meta step, which a run config does not express, so comparisons run Reptile with MAML's protocol
(docs/presets.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mamlkit.algorithms.hooks import OUTER_GRADIENTS, Objective, OuterGradient, TaskRun
from mamlkit.algorithms.spec import AlgorithmSpec, register_algorithm
from mamlkit.episodes import Episode

NICHOL_2018 = "Nichol, Achiam, Schulman. On First-Order Meta-Learning Algorithms. 2018."


@dataclass(frozen=True)
class ReptileGradient(OuterGradient):
    """``outer_gradient="reptile"``: the gradient ``sum_b (theta - phi_b)`` over the adapting
    tensors, from the surrogate ``sum_b 0.5 * ||theta - stopgrad(phi_b)||^2``; the query loss
    after adaptation is only a metric."""

    @classmethod
    def check(cls, spec: AlgorithmSpec) -> None:
        """Reptile is first order, learns no inner rates and weighs no query losses."""
        if not spec.first_order:
            raise ValueError(
                "reptile never differentiates through the inner loop: set first_order=True"
            )
        if spec.learns_inner_rates:
            raise ValueError(
                f"update_rule {spec.update_rule!r} learns inner learning rates, but the "
                "reptile outer gradient gives them no gradient; use fixed or adam"
            )
        if spec.step_loss != "last":
            raise ValueError("the reptile outer gradient uses no query loss: step_loss='last'")

    def objective(
        self,
        run: TaskRun,
        episode: Episode,
        weights: list[float],
        first_order: bool,
    ) -> Objective:
        """The surrogate (to backpropagate), and the query loss and outputs of the adapted
        weights (scored without a graph)."""
        support_x, support_y, query_x, query_y = episode
        final = run.trajectory(support_x, support_y, keep={run.inner_steps}, first_order=True)[-1]
        theta = run.model_params()
        surrogate = sum(
            0.5 * (theta[n] - final[n].detach()).pow(2).sum()  # type: ignore[index]
            for n in run.adapt_names
        )
        with torch.no_grad():
            outputs = run.outputs_after(final, query_x)  # type: ignore[arg-type]
            query_loss = run.summed_loss(outputs, query_y)
        return surrogate, query_loss, outputs  # type: ignore[return-value]


OUTER_GRADIENTS.add("reptile", ReptileGradient)

SPEC = register_algorithm(
    AlgorithmSpec("reptile", first_order=True, outer_gradient="reptile", reference=NICHOL_2018)
)
