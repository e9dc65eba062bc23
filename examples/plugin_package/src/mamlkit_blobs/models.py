"""TinyMLP: a model factory as mamlkit calls it, with the classifier named ``head``."""

from __future__ import annotations

from torch import Tensor, nn


class TinyMLP(nn.Module):
    """One hidden layer. mamlkit passes ``in_channels`` (the first dimension of an example's
    shape), ``num_classes``, ``hidden`` and ``image_size``; a flat example of F features gives
    ``in_channels=F``. Naming the last layer ``head`` lets head-only algorithms find it."""

    def __init__(
        self, in_channels: int = 8, num_classes: int = 5, hidden: int = 32, image_size: int = 1
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[n, num_classes]`` of points ``[n, in_channels]``."""
        return self.head(self.body(x))
