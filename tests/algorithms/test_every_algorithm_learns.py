"""Every registered algorithm learns: a few iterations on tasks of Gaussian blobs lower the query
loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mamlkit import ALGORITHMS, MetaLearner, fit


class TinyNet(nn.Module):
    """A two-layer net with BatchNorm (so MAML++'s per-step tricks apply) and a ``head``."""

    def __init__(self, features: int = 8, ways: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Linear(features, 16), nn.BatchNorm1d(16, track_running_stats=True), nn.ReLU()
        )
        self.head = nn.Linear(16, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def blob_tasks(iterations: int, tasks: int = 8, ways: int = 3, seed: int = 0):
    """Tasks of Gaussian blobs with fresh class centres: learnable only by fast adaptation."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(iterations):
        centres = 2 * torch.randn(tasks, ways, 1, 8, generator=g)
        sx = (centres + 0.5 * torch.randn(tasks, ways, 2, 8, generator=g)).flatten(1, 2)
        qx = (centres + 0.5 * torch.randn(tasks, ways, 4, 8, generator=g)).flatten(1, 2)
        sy = torch.arange(ways).repeat_interleave(2).repeat(tasks, 1)
        qy = torch.arange(ways).repeat_interleave(4).repeat(tasks, 1)
        yield sx, sy, qx, qy


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_a_few_iterations_of_every_preset_lower_the_query_loss(name: str) -> None:
    torch.manual_seed(0)
    lr = 0.05 if ALGORITHMS.get(name).update_rule == "adam" else 0.3
    learner = MetaLearner(TinyNet(), name, inner_lr=lr, inner_steps=2, first_order_iterations=20)
    optimiser = torch.optim.Adam(learner.parameters(), lr=0.01)
    losses = fit(learner, blob_tasks(60), optimiser, iterations=60, progress=False)
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10, losses
