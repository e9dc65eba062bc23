"""The standard 4-layer convolutional few-shot classifier (Vinyals 2016, Finn 2017).

Four blocks of [3x3 conv (``hidden`` filters, padding 1), BatchNorm, ReLU, 2x2 max-pool], then a
linear head. BatchNorm follows the MAML papers' convention: it always normalises with the
statistics of the batch it is given (``track_running_stats=False``), in training and at test time,
so each task's support and query sets are normalised by their own statistics and no running
averages leak across tasks. Its affine scale and shift are ordinary parameters (they adapt).
``track_running_stats=True`` builds the layers with running statistics instead, which MAML++'s
per-step statistics (BNRS) collect during meta-training and normalise with at evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mamlkit.checks import FOUR_POOLS, model_sizes


class ConvBlock(nn.Sequential):
    """One Conv4 block: 3x3 conv (padding 1), BatchNorm, ReLU, 2x2 max-pool (halves the side).

    Its parameters are ``conv.{weight,bias}`` and ``norm.{weight,bias}``;
    ``track_running_stats`` builds the BatchNorm with running statistics (MAML++'s BNRS).
    """

    def __init__(
        self, in_channels: int, out_channels: int, track_running_stats: bool = False
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels, track_running_stats=track_running_stats)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)


class Conv4(nn.Module):
    """Conv4 for ``[n, in_channels, image_size, image_size]`` inputs and ``num_classes`` outputs.

    Parameter names: ``features.block{1..4}.{conv,norm}.{weight,bias}`` and ``head.{weight,bias}``
    (so ``adapt=("head.*",)`` adapts only the classifier). The head sees ``hidden * s * s``
    features with ``s = image_size // 16`` (floor after each pool): 64 * 1 * 1 at 28x28 (Omniglot),
    32 * 5 * 5 = 800 at 84x84 (mini-ImageNet with the MAML paper's 32 filters).

    Args:
        in_channels: input channels (1 for Omniglot, 3 for mini-ImageNet).
        num_classes: outputs of the head (N ways).
        hidden: filters of every conv layer.
        image_size: input side, at least 16 (four 2x2 pools).
        track_running_stats: BatchNorm with running statistics (for MAML++'s per-step
            statistics, BNRS) instead of batch statistics only.

    >>> import torch
    >>> from mamlkit import Conv4
    >>> model = Conv4(in_channels=1, num_classes=5, hidden=64, image_size=28)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 5])
    >>> Conv4(in_channels=3, hidden=32, image_size=84).head
    Linear(in_features=800, out_features=5, bias=True)
    >>> [name for name, _ in model.named_parameters()][:2]
    ['features.block1.conv.weight', 'features.block1.conv.bias']
    """

    #: Inputs are images ``[n, C, H, W]``.
    input_ndim: int | None = 3

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 5,
        hidden: int = 64,
        image_size: int = 28,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__()
        model_sizes(
            "Conv4",
            min_image_size=FOUR_POOLS,
            in_channels=in_channels,
            num_classes=num_classes,
            hidden=hidden,
            image_size=image_size,
        )
        self.features = nn.Sequential()
        channels = in_channels
        for i in range(1, 5):
            self.features.add_module(f"block{i}", ConvBlock(channels, hidden, track_running_stats))
            channels = hidden
        side = image_size
        for _ in range(4):
            side //= 2
        self.head = nn.Linear(hidden * side * side, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform conv/linear weights, zero biases, unit BatchNorm scale (MAML's code)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[n, num_classes]`` of images ``[n, in_channels, image_size, image_size]``."""
        return self.head(torch.flatten(self.features(x), 1))
