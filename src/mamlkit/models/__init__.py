"""Model registry: factories ``(in_channels, num_classes, image_size, **options) -> nn.Module``."""

from __future__ import annotations

from mamlkit.models.conv4 import Conv4
from mamlkit.registry import Registry

MODELS: Registry = Registry("model")
MODELS.add("conv4", Conv4)

__all__ = ["MODELS", "Conv4"]
