"""A fully connected network: the sinusoid-regression model of Finn et al. (2017), section 5.1.

``MLP(in_channels=1, num_classes=1, hidden=40)`` is the paper's 1-40-40-1 network with ReLU. Inputs
of any shape ``[n, ...]`` are flattened, so the same class also works on images (``in_channels *
image_size**2`` input features); a flat input of ``D`` features is ``in_channels=D, image_size=1``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mamlkit.checks import model_sizes


class MLP(nn.Module):
    """``layers`` hidden [linear, ReLU] blocks of ``hidden`` units, then a linear head.

    Parameter names: ``features.block{1..layers}.linear.{weight,bias}`` and ``head.{weight,bias}``
    (so ``adapt=("head.*",)`` adapts only the output layer, as for :class:`~mamlkit.Conv4`).
    Weights keep PyTorch's default ``nn.Linear`` initialisation.

    Args:
        in_channels: input features (with ``image_size``: ``in_channels * image_size**2``).
        num_classes: outputs of the head (one per regression target, or N ways).
        hidden: units of every hidden layer; 40, Finn et al.'s sinusoid network, by default
            (``mamlkit train --hidden`` defaults to 64, Conv4's width, for every model).
        image_size: side of image inputs; 1 for flat inputs.
        layers: hidden [linear, ReLU] blocks.

    >>> import torch
    >>> from mamlkit.models import MLP
    >>> model = MLP(in_channels=1, num_classes=1, hidden=40)  # Finn et al.'s 1-40-40-1 network
    >>> model(torch.zeros(3, 1)).shape
    torch.Size([3, 1])
    >>> [name for name, _ in model.named_parameters()]  # doctest: +NORMALIZE_WHITESPACE
    ['features.block1.linear.weight', 'features.block1.linear.bias',
     'features.block2.linear.weight', 'features.block2.linear.bias', 'head.weight', 'head.bias']
    """

    #: Any input shape works (it is flattened).
    input_ndim: int | None = None

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        hidden: int = 40,
        image_size: int = 1,
        layers: int = 2,
    ) -> None:
        super().__init__()
        model_sizes(
            "MLP", in_channels=in_channels, num_classes=num_classes, hidden=hidden,
            image_size=image_size, layers=layers,
        )  # fmt: skip
        self.in_features = in_channels * image_size * image_size
        self.features = nn.Sequential()
        width = self.in_features
        for i in range(1, layers + 1):
            block = nn.Sequential()
            block.add_module("linear", nn.Linear(width, hidden))
            block.add_module("relu", nn.ReLU())
            self.features.add_module(f"block{i}", block)
            width = hidden
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs ``[n, num_classes]`` of inputs ``[n, ...]`` (flattened to ``[n, features]``)."""
        # No shape check here (it would be control flow on the input, which torch.fx cannot
        # trace); MetaLearner checks every new input shape with a forward of its own.
        return self.head(self.features(torch.flatten(x, 1)))
