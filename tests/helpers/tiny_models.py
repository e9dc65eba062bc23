"""A tiny float64 instance of every registered model, and episodes it can take."""

from __future__ import annotations

import torch

from mamlkit.models import parse_model

#: A tiny instance of each model: factory kwargs and the per-example input shape.
TINY = {
    "conv4": ({"in_channels": 1, "hidden": 3, "image_size": 16}, (1, 16, 16)),
    "mlp": ({"in_channels": 1, "hidden": 6, "image_size": 1}, (1,)),
    "resnet12": ({"in_channels": 3, "hidden": 2, "image_size": 16}, (3, 16, 16)),
}
#: Tiny instances of model variants (``name[option=value]``), tested like the models.
VARIANTS = {
    "conv4[downsample=stride]": ({"in_channels": 1, "hidden": 3, "image_size": 16}, (1, 16, 16)),
    "resnet12[gradient_checkpointing=true]": TINY["resnet12"],
}

WAYS = 3


def build(name: str, seed: int = 0) -> tuple[torch.nn.Module, tuple[int, ...]]:
    kwargs, shape = {**TINY, **VARIANTS}[name]
    factory, options = parse_model(name)
    torch.manual_seed(seed)
    return factory(num_classes=WAYS, **kwargs, **options).double(), shape


def episode(shape: tuple[int, ...], tasks: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(3)
    sx = torch.rand(tasks, 2 * WAYS, *shape, generator=g, dtype=torch.float64)
    qx = torch.rand(tasks, 2 * WAYS, *shape, generator=g, dtype=torch.float64)
    y = torch.arange(WAYS).repeat(2).repeat(tasks, 1)
    return sx, y, qx, y
