"""ResNet-12, the standard deeper few-shot backbone (Oreshkin et al. 2018; Lee et al. 2019).

Four residual blocks, each [3x3 conv, BatchNorm, LeakyReLU(0.1)] x 2 + [3x3 conv, BatchNorm], added
to a [1x1 conv, BatchNorm] shortcut, then LeakyReLU(0.1) and a 2x2 max-pool; then global average
pooling and a linear head. Widths are 64-160-320-640 by default (``hidden`` scales them:
``hidden * (1, 2.5, 5, 10)``). DropBlock and other regularisers of the original papers are left out.

As in :class:`~mamlkit.Conv4`, BatchNorm always uses the statistics of the batch it is given
(``track_running_stats=False``): the model has no buffers, so it is a pure function of its
parameters under ``torch.func.functional_call`` and supports double backward (MAML).

``gradient_checkpointing=True`` (as a model name, ``resnet12[gradient_checkpointing=true]``)
checkpoints each residual block (:mod:`mamlkit.models.checkpointing`): the forward pass keeps
only the block's input, and every backward pass that reaches the block recomputes its
activations. Same values and gradients; less memory (mostly the query passes') for more time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mamlkit.checks import FOUR_POOLS, model_sizes, positive_int
from mamlkit.models.checkpointing import checkpointed

#: Block widths relative to ``hidden`` (64 -> 64, 160, 320, 640).
WIDTH_RATIOS = (1.0, 2.5, 5.0, 10.0)


def _conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, track: bool
) -> tuple[nn.Conv2d, nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
    return conv, nn.BatchNorm2d(out_channels, track_running_stats=track)


class ResidualBlock(nn.Module):
    """Three 3x3 conv + BatchNorm layers plus a 1x1 conv + BatchNorm shortcut, then pool by 2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        slope: float = 0.1,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__()
        track = track_running_stats
        self.conv1, self.norm1 = _conv_bn(in_channels, out_channels, 3, track)
        self.conv2, self.norm2 = _conv_bn(out_channels, out_channels, 3, track)
        self.conv3, self.norm3 = _conv_bn(out_channels, out_channels, 3, track)
        self.shortcut = nn.Sequential()
        conv, norm = _conv_bn(in_channels, out_channels, 1, track)
        self.shortcut.add_module("conv", conv)
        self.shortcut.add_module("norm", norm)
        self.relu = nn.LeakyReLU(slope)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        """``[n, out_channels, H // 2, W // 2]`` features of ``[n, in_channels, H, W]`` inputs."""
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self.pool(self.relu(out + self.shortcut(x)))


class ResNet12(nn.Module):
    """ResNet-12 for ``[n, in_channels, image_size, image_size]`` inputs, ``num_classes`` outputs.

    Args:
        in_channels: input channels (3 for mini-ImageNet).
        num_classes: outputs of the linear head (N ways).
        hidden: width of the first block; the others are 2.5x, 5x and 10x it.
        image_size: input side; at least 16 (four 2x2 pools).
        channels: the four block widths, overriding ``hidden``.
        track_running_stats: BatchNorm with running statistics (for MAML++'s per-step
            statistics, BNRS) instead of batch statistics only.
        gradient_checkpointing: recompute each block's activations in the backward pass
            instead of keeping them (less memory, more time; same gradients).

    Parameter names: ``features.block{1..4}.{conv,norm}{1,2,3}.*``,
    ``features.block{1..4}.shortcut.{conv,norm}.*`` and ``head.{weight,bias}`` (so
    ``adapt=("head.*",)`` adapts only the classifier).

    >>> import torch
    >>> from mamlkit.models import ResNet12
    >>> ResNet12().channels  # mini-ImageNet's standard widths
    (64, 160, 320, 640)
    >>> small = ResNet12(in_channels=3, num_classes=5, hidden=4, image_size=32)
    >>> small.channels, small(torch.zeros(2, 3, 32, 32)).shape
    ((4, 10, 20, 40), torch.Size([2, 5]))
    """

    #: Inputs are images ``[n, C, H, W]``.
    input_ndim: int | None = 3

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 5,
        hidden: int = 64,
        image_size: int = 84,
        channels: Sequence[int] | None = None,
        track_running_stats: bool = False,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        model_sizes(
            "ResNet12",
            min_image_size=FOUR_POOLS,
            in_channels=in_channels,
            num_classes=num_classes,
            hidden=hidden,
            image_size=image_size,
        )
        if channels is None:
            channels = [max(1, round(hidden * r)) for r in WIDTH_RATIOS]
        if len(channels) != 4:
            raise ValueError(f"ResNet12 channels must list 4 widths, got {list(channels)}")
        self.channels = tuple(positive_int("ResNet12 channels", c) for c in channels)
        self.features = nn.Sequential()
        width = in_channels
        for i, out in enumerate(self.channels, start=1):
            self.features.add_module(
                f"block{i}", ResidualBlock(width, out, track_running_stats=track_running_stats)
            )
            width = out
        self.head = nn.Linear(width, num_classes)
        #: The submodules whose activations are recomputed in the backward pass.
        self.checkpoint_modules: tuple[str, ...] = ()
        if gradient_checkpointing:
            self.checkpoint_modules = tuple(
                f"features.{name}" for name, _ in self.features.named_children()
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convs (fan-out, leaky ReLU), unit BatchNorm scale, Xavier head."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[n, num_classes]`` of images ``[n, in_channels, image_size, image_size]``."""
        if self.checkpoint_modules:
            for block in self.features:
                x = checkpointed(block, x)
        else:
            x = self.features(x)
        return self.head(torch.flatten(x.mean(dim=(2, 3)), 1))
