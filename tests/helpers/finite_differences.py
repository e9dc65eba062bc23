"""A learner's meta-gradient against central finite differences, entry by entry (float64)."""

from __future__ import annotations

import torch

from mamlkit import MetaLearner


def central_differences_agree(learner: MetaLearner, data: tuple, entries: int = 2) -> None:
    """The meta-gradient of ``entries`` random entries of every tensor against (f(+e)-f(-e))/2e."""
    loss, _ = learner.meta_loss(*data)
    grads = torch.autograd.grad(
        loss, list(learner.parameters()), allow_unused=True, materialize_grads=True
    )
    g = torch.Generator().manual_seed(5)
    eps = 1e-6
    with torch.no_grad():
        for param, analytic in zip(learner.parameters(), grads, strict=True):
            flat, want = param.view(-1), analytic.reshape(-1)
            for i in torch.randperm(flat.numel(), generator=g)[:entries].tolist():
                original = flat[i].item()
                flat[i] = original + eps
                plus = learner.meta_loss(*data)[0].item()
                flat[i] = original - eps
                minus = learner.meta_loss(*data)[0].item()
                flat[i] = original
                numeric = torch.tensor((plus - minus) / (2 * eps), dtype=torch.float64)
                torch.testing.assert_close(want[i], numeric, rtol=1e-4, atol=1e-6)
