"""A tiny float64 Conv4 learner, its episodes, and the MAML objective unrolled by hand.

The reference (:func:`reference_forward`, :func:`reference_meta_loss`) uses no mamlkit code: Conv4
op by op and K explicit SGD steps per task, so the meta-gradients of every preset and execution
strategy can be held to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mamlkit import Conv4, MetaLearner
from mamlkit.algorithms import parse_algorithm

WAYS, SHOTS, QUERIES, TASKS, SIZE = 3, 2, 2, 2, 16


EXECUTIONS = ["loop", "batched"]


def tiny_conv(seed: int = 0, track_running_stats: bool = False) -> Conv4:
    torch.manual_seed(seed)
    model = Conv4(
        in_channels=1,
        num_classes=WAYS,
        hidden=2,
        image_size=SIZE,
        track_running_stats=track_running_stats,
    )
    return model.double()


def make_learner(preset: str, execution: str, **settings: object) -> MetaLearner:
    """A float64 learner of ``preset`` on the tiny Conv4, second order from iteration 0.

    Presets with per-step running statistics (BNRS) get a model that tracks them. BatchNorm
    updating running statistics in training runs task by task, so under ``batched`` such a
    preset is tested without BNRS (its BNRS is tested on its own in
    ``tests/algorithms/test_mamlpp.py``).
    """
    spec = parse_algorithm(preset)
    if execution == "batched" and spec.bn_per_step_stats:
        spec = spec.replace(bn_per_step_stats=False)
    settings.setdefault("first_order_iterations", 0)
    model = tiny_conv(track_running_stats=spec.bn_per_step_stats)
    return MetaLearner(model, spec, execution=execution, **settings).double()  # type: ignore[arg-type]


def episode(seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(TASKS, WAYS * SHOTS, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    qx = torch.rand(TASKS, WAYS * QUERIES, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    sy = torch.arange(WAYS).repeat_interleave(SHOTS).repeat(TASKS, 1)
    qy = torch.arange(WAYS).repeat_interleave(QUERIES).repeat(TASKS, 1)
    return sx, sy, qx, qy


def reference_forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Conv4 written out op by op (no functional_call, no mamlkit code)."""
    h = x
    for i in range(1, 5):
        block = f"features.block{i}"
        h = F.conv2d(h, p[f"{block}.conv.weight"], p[f"{block}.conv.bias"], padding=1)
        h = F.batch_norm(h, None, None, p[f"{block}.norm.weight"], p[f"{block}.norm.bias"], True)
        h = F.max_pool2d(F.relu(h), 2)
    return F.linear(h.flatten(1), p["head.weight"], p["head.bias"])


def bn_weights_at(learner: MetaLearner, params: dict, step: int) -> dict:
    """MAML++ BNWB by hand: step ``s >= 1`` uses its own BatchNorm scales and shifts."""
    if step == 0 or not learner.algorithm.bn_per_step_weights:
        return params
    chosen = dict(params)
    for i in range(1, 5):
        for leaf in ("weight", "bias"):
            name = f"features.block{i}.norm.{leaf}"
            chosen[name] = learner.per_step.weights[name.replace(".", "-")][step - 1]
    return chosen


def reference_meta_loss(learner: MetaLearner, data, step_weights, lr_of, first_order=False):
    """The MAML objective unrolled by hand: K explicit SGD steps per task, weighted query losses.

    Only ``learner.adapt_names`` adapt; the support pass of step ``s`` and the query pass after
    it use the BatchNorm weights of step ``s`` (MAML++ BNWB, where the preset has it).
    """
    sx, sy, qx, qy = data
    theta = dict(learner.model.named_parameters())
    adapting = learner.adapt_names
    total = 0.0
    for b in range(sx.shape[0]):
        params = dict(theta)
        task_loss = 0.0
        for step in range(len(step_weights)):
            if first_order:
                source = {
                    n: (p.detach().requires_grad_() if n in adapting else p.detach())
                    for n, p in params.items()
                }
            else:
                source = params
            inner = F.cross_entropy(
                reference_forward(bn_weights_at(learner, source, step), sx[b]), sy[b]
            )
            grads = torch.autograd.grad(
                inner, [source[n] for n in adapting], create_graph=not first_order
            )
            params = dict(params)
            for n, g in zip(adapting, grads, strict=True):
                params[n] = params[n] - lr_of(n, step) * g
            if step_weights[step] != 0:
                query = reference_forward(bn_weights_at(learner, params, step), qx[b])
                task_loss = task_loss + step_weights[step] * F.cross_entropy(query, qy[b])
        total = total + task_loss
    return total / sx.shape[0]


def grads_of(loss: torch.Tensor, learner: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(learner.parameters())))


def cancelled_by_batch_norm(name: str) -> bool:
    """Conv4's conv biases feed batch-statistics BatchNorm, which subtracts them again: their
    gradient, and so that of their learned inner rate, is zero in exact arithmetic on every path
    (the loop shows only rounding noise)."""
    bias = name.startswith("model.features.") and name.endswith(".conv.bias")
    rate = name.startswith("inner_update.rates.features-") and name.endswith("-conv-bias")
    return bias or rate
