"""The standard 4-layer convolutional few-shot classifier (Vinyals 2016, Finn 2017).

Four blocks of [3x3 conv (``hidden`` filters, padding 1), BatchNorm, ReLU, 2x2 max-pool], then a
linear head. ``downsample="stride"`` is Finn et al.'s Omniglot network instead: each block's conv
has stride 2 and no max-pool follows, and the head sees the features averaged over the remaining
positions (their code's ``reduce_mean`` for every dataset but mini-ImageNet); it has the same
parameters and does about a quarter of the convolution work.

BatchNorm follows the MAML papers' convention: it always normalises with the statistics of the
batch it is given (``track_running_stats=False``), in training and at test time, so each task's
support and query sets are normalised by their own statistics and no running averages leak across
tasks. Its affine scale and shift are ordinary parameters (they adapt).
``track_running_stats=True`` builds the layers with running statistics instead, which MAML++'s
per-step statistics (BNRS) collect during meta-training and normalise with at evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mamlkit.checks import FOUR_POOLS, model_sizes

#: How a Conv4 block halves the image side: a 2x2 max-pool after the conv, or a stride-2 conv.
DOWNSAMPLES = ("pool", "stride")


class ConvBlock(nn.Sequential):
    """One Conv4 block: 3x3 conv (padding 1), BatchNorm, ReLU, 2x2 max-pool (halves the side);
    with ``downsample="stride"`` the conv has stride 2 and there is no pool.

    Its parameters are ``conv.{weight,bias}`` and ``norm.{weight,bias}``;
    ``track_running_stats`` builds the BatchNorm with running statistics (MAML++'s BNRS).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        track_running_stats: bool = False,
        downsample: str = "pool",
    ) -> None:
        super().__init__()
        stride = 2 if downsample == "stride" else 1
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)
        self.norm = nn.BatchNorm2d(out_channels, track_running_stats=track_running_stats)
        self.relu = nn.ReLU()
        if downsample == "pool":
            self.pool = nn.MaxPool2d(2)


class Conv4(nn.Module):
    """Conv4 for ``[n, in_channels, image_size, image_size]`` inputs and ``num_classes`` outputs.

    Parameter names: ``features.block{1..4}.{conv,norm}.{weight,bias}`` and ``head.{weight,bias}``
    (so ``adapt=("head.*",)`` adapts only the classifier). The head sees ``hidden * s * s``
    features with ``s = image_size // 16`` (floor after each pool): 64 * 1 * 1 at 28x28 (Omniglot),
    32 * 5 * 5 = 800 at 84x84 (mini-ImageNet with the MAML paper's 32 filters). With
    ``downsample="stride"`` it sees ``hidden`` features (averaged over positions) at any size.

    Args:
        in_channels: input channels (1 for Omniglot, 3 for mini-ImageNet).
        num_classes: outputs of the head (N ways).
        hidden: filters of every conv layer.
        image_size: input side, at least 16 (four 2x2 pools).
        track_running_stats: BatchNorm with running statistics (for MAML++'s per-step
            statistics, BNRS) instead of batch statistics only.
        downsample: ``"pool"`` (2x2 max-pool after each conv, the common Conv4) or ``"stride"``
            (stride-2 convs and averaged features, Finn et al.'s Omniglot network; as a model name,
            ``conv4[downsample=stride]``).

    >>> import torch
    >>> from mamlkit import Conv4
    >>> model = Conv4(in_channels=1, num_classes=5, hidden=64, image_size=28)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 5])
    >>> Conv4(in_channels=3, hidden=32, image_size=84).head
    Linear(in_features=800, out_features=5, bias=True)
    >>> strided = Conv4(hidden=64, image_size=28, downsample="stride")
    >>> strided.head, strided(torch.zeros(2, 1, 28, 28)).shape
    (Linear(in_features=64, out_features=5, bias=True), torch.Size([2, 5]))
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
        downsample: str = "pool",
    ) -> None:
        super().__init__()
        if downsample not in DOWNSAMPLES:
            raise ValueError(
                f"Conv4 downsample must be one of {', '.join(DOWNSAMPLES)}, got {downsample!r}"
            )
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
            block = ConvBlock(channels, hidden, track_running_stats, downsample)
            self.features.add_module(f"block{i}", block)
            channels = hidden
        self.average_positions = downsample == "stride"
        side = 1 if self.average_positions else image_size
        for _ in range(0 if self.average_positions else 4):
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
        features = self.features(x)
        if self.average_positions:
            return self.head(features.mean(dim=(2, 3)))
        return self.head(torch.flatten(features, 1))
