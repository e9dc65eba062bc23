"""A tiny float64 instance of every registered model, and episodes it can take."""

from __future__ import annotations

import torch

from mamlkit import MODELS

#: A tiny instance of each model: factory kwargs and the per-example input shape.
TINY = {
    "conv4": ({"in_channels": 1, "hidden": 3, "image_size": 16}, (1, 16, 16)),
    "mlp": ({"in_channels": 1, "hidden": 6, "image_size": 1}, (1,)),
    "resnet12": ({"in_channels": 3, "hidden": 2, "image_size": 16}, (3, 16, 16)),
}


WAYS = 3


def build(name: str, seed: int = 0) -> tuple[torch.nn.Module, tuple[int, ...]]:
    kwargs, shape = TINY[name]
    torch.manual_seed(seed)
    return MODELS.get(name)(num_classes=WAYS, **kwargs).double(), shape


def episode(shape: tuple[int, ...], tasks: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(3)
    sx = torch.rand(tasks, 2 * WAYS, *shape, generator=g, dtype=torch.float64)
    qx = torch.rand(tasks, 2 * WAYS, *shape, generator=g, dtype=torch.float64)
    y = torch.arange(WAYS).repeat(2).repeat(tasks, 1)
    return sx, y, qx, y
