"""A small classifier of 8 features (its head named ``head``) and tasks of Gaussian blobs it can
learn by fast adaptation."""

from __future__ import annotations

import torch
from torch import nn


def linear_tasks(tasks: int, ways: int = 2, shots: int = 4, queries: int = 4, seed: int = 0):
    """Tasks whose classes are Gaussian blobs at task-specific random centres (learnable)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(tasks, ways, 1, 8, generator=g) * 2

    def draw(k: int):
        x = centres.repeat_interleave(k, dim=1) + 0.3 * torch.randn(
            tasks, ways * k, 1, 8, generator=g
        )
        y = torch.arange(ways).repeat_interleave(k).repeat(tasks, 1)
        return x, y

    sx, sy = draw(shots)
    qx, qy = draw(queries)
    return sx, sy, qx, qy


class Flat(nn.Module):
    def __init__(self, ways: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(16, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
