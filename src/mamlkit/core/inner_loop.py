"""The one functional inner loop every algorithm is built from.

A *forward* is a pure function ``forward(params, x) -> logits`` (``torch.func.functional_call`` on
the user's model). :func:`adapt` runs K gradient steps on a task's support set and returns the
whole trajectory of parameter dicts, so callers can weigh the query loss of any step (MAML: last
step, MAML++: all steps). Whether the steps are differentiated through is one flag:

* second order (``first_order=False``): inner gradients keep their graph (``create_graph=True``), so
  the meta-gradient flows through every inner update, Hessian-vector products included;
* first order (``first_order=True``): inner gradients are computed on detached copies and enter the
  update as constants; the meta-gradient is then the query-loss gradient at the adapted weights
  (FOMAML), and learned learning rates still receive ``-g_inner * dL/dtheta'``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mamlkit.core.update_rules import InnerUpdate
from mamlkit.vocabulary import Params

Forward = Callable[[Params, Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
#: ``at_step(params, s)``: the tensors a forward of inner step ``s`` sees (per-step BatchNorm).
StepView = Callable[[Params, int], Params]


def _at(forward: Forward, at_step: StepView | None, step: int) -> Forward:
    if at_step is None:
        return forward
    return lambda params, x: forward(at_step(params, step), x)


def functional_forward(model: nn.Module) -> Forward:
    """``forward(params, x)``: ``model`` evaluated with ``params`` (plus its current buffers).

    The pure-function view of a model that :func:`adapt` differentiates: the model's own
    parameters are not used, so adapted weights can be plugged in without touching the model.

    >>> import torch
    >>> from mamlkit.core import functional_forward
    >>> model = torch.nn.Linear(2, 1)
    >>> zeros = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    >>> functional_forward(model)(zeros, torch.ones(4, 2)).squeeze(1)
    tensor([0., 0., 0., 0.])
    """

    if next(model.buffers(), None) is None:  # e.g. Conv4: skip the per-call buffer lookup

        def forward(params: Params, x: Tensor) -> Tensor:
            return functional_call(model, params, (x,))

        return forward

    def forward_with_buffers(params: Params, x: Tensor) -> Tensor:
        # Buffers are looked up per call: ``model.to(device)`` replaces them.
        return functional_call(model, {**dict(model.named_buffers()), **params}, (x,))

    return forward_with_buffers


def inner_gradients(
    forward: Forward,
    params: Params,
    names: Collection[str],
    x: Tensor,
    y: Tensor,
    *,
    create_graph: bool,
    loss_fn: LossFn = F.cross_entropy,
) -> tuple[Tensor, Params]:
    """Support loss at ``params`` and its gradient w.r.t. the tensors in ``names``.

    With ``create_graph=False`` the gradient is taken at detached copies, so no graph of the support
    pass is kept: first-order steps cost one forward/backward and keep nothing alive. A tensor
    that does not affect the loss gets a zero gradient.
    """
    if not create_graph:
        params = {
            n: (p.detach().requires_grad_(True) if n in names else p.detach())
            for n, p in params.items()
        }
    with torch.enable_grad():
        loss = loss_fn(forward(params, x), y)
        wrt = [params[n] for n in names]
        grads = torch.autograd.grad(
            loss, wrt, create_graph=create_graph, allow_unused=True, materialize_grads=True
        )
    return loss, dict(zip(names, grads, strict=True))


def adapt(
    forward: Forward,
    params: Params,
    support_x: Tensor,
    support_y: Tensor,
    *,
    update: InnerUpdate,
    steps: int,
    first_order: bool,
    names: Collection[str] | None = None,
    loss_fn: LossFn = F.cross_entropy,
    keep: Collection[int] | None = None,
    at_step: StepView | None = None,
) -> list[Params | None]:
    """Adapt ``params`` to one task (or a batch of tasks) with ``steps`` inner updates.

    Returns the trajectory ``[theta_0, theta_1, ..., theta_steps]`` where ``theta_0 = params``.
    ``names`` selects which tensors adapt (default: those the update rule knows); the others are
    carried unchanged. Gradients flow to ``params`` and to the update rule's learned rates
    (under ``torch.no_grad()`` the values are the same and nothing is differentiable).
    ``keep`` lists the step numbers the caller needs (the last is always kept); the others are
    ``None`` in the result and freed as soon as the next step exists, which bounds first-order
    memory to one step's weights whatever the number of steps. ``at_step`` gives the tensors
    of each step (MAML++'s per-step BatchNorm); the support pass of step ``s`` uses step ``s``.

    Second-order MAML by hand on one regression task, with the pieces
    :class:`~mamlkit.MetaLearner` combines:

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from mamlkit.core import (
    ...     adapt, functional_forward, last_step_weights, make_update_rule, weighted_query_loss
    ... )
    >>> model = torch.nn.Linear(2, 1)
    >>> forward = functional_forward(model)
    >>> params = dict(model.named_parameters())
    >>> update = make_update_rule("fixed", list(params), lr=0.1, steps=3)
    >>> x, y = torch.randn(8, 2), torch.randn(8, 1)
    >>> trajectory = adapt(
    ...     forward, params, x, y, update=update, steps=3, first_order=False, loss_fn=F.mse_loss
    ... )
    >>> len(trajectory)  # theta_0 .. theta_3
    4
    >>> loss, outputs = weighted_query_loss(
    ...     forward, trajectory, x, y, last_step_weights(3), loss_fn=F.mse_loss
    ... )
    >>> sorted(outputs)  # only the last step's query loss counts
    [3]
    >>> loss.backward()  # through all three inner updates into the model's parameters
    >>> model.weight.grad.shape
    torch.Size([1, 2])
    """
    names = tuple(update.names if names is None else names)
    # Under torch.no_grad() nothing can be differentiated anyway: take the cheap first-order path.
    create_graph = not first_order and torch.is_grad_enabled()
    trajectory: list[Params | None] = [params]
    current = params
    state = update.initial_state()
    for step in range(steps):
        _, grads = inner_gradients(
            _at(forward, at_step, step),
            current,
            names,
            support_x,
            support_y,
            create_graph=create_graph,
            loss_fn=loss_fn,
        )
        current = update(current, grads, step, state)
        if keep is not None and step not in keep:
            trajectory[-1] = None
        trajectory.append(current)
    return trajectory


def weighted_query_loss(
    forward: Forward,
    trajectory: list[Params | None],
    query_x: Tensor,
    query_y: Tensor,
    step_weights: Tensor | list[float],
    *,
    loss_fn: LossFn = F.cross_entropy,
    at_step: StepView | None = None,
) -> tuple[Tensor, dict[int, Tensor]]:
    """``sum_s w_s * L_query(theta_{s+1})`` over the steps with non-zero weight.

    ``step_weights[s]`` weighs the query loss after inner step ``s + 1`` (evaluated with the
    tensors of step ``s`` under ``at_step``). Returns the weighted loss and the query outputs of
    each evaluated step (keyed by step number, 1-based), for metrics. All-zero weights are a
    ``ValueError``. See :func:`adapt` for an example.
    """
    total: Tensor | None = None
    logits_by_step: dict[int, Tensor] = {}
    weights = step_weights.tolist() if isinstance(step_weights, Tensor) else list(step_weights)
    for index, weight in enumerate(weights):
        if weight == 0.0:
            continue
        logits = _at(forward, at_step, index)(trajectory[index + 1], query_x)
        logits_by_step[index + 1] = logits
        loss = loss_fn(logits, query_y)
        term = loss if weight == 1.0 else weight * loss
        total = term if total is None else total + term
    if total is None:
        raise ValueError("step_weights are all zero: no query loss would be optimised")
    return total, logits_by_step
