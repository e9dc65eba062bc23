"""Model registry: factories ``(in_channels, num_classes, hidden, image_size) -> nn.Module``.

Every factory takes those four keyword arguments (``hidden`` is the model's width: filters per conv
layer, units per hidden layer, or the first ResNet block's channels). A model class may set
``input_ndim`` (3 for images ``[C, H, W]``, ``None`` for any input shape) so a run can refuse a
dataset whose inputs it cannot take. Every model names its final linear layer ``head``.

>>> from mamlkit.models import MODELS
>>> MODELS.names()
['conv4', 'mlp', 'resnet12']
>>> model = MODELS.get("conv4")(in_channels=1, num_classes=20, hidden=32, image_size=28)
>>> model.head
Linear(in_features=32, out_features=20, bias=True)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mamlkit.models.conv4 import Conv4
from mamlkit.models.mlp import MLP
from mamlkit.models.resnet12 import ResNet12
from mamlkit.registry import PluginError, Registry


def _plugin_factory(name: str, obj: object) -> Callable[..., nn.Module]:
    """A plug-in model (entry point or ``module:attribute``) must be a factory to call."""
    if not callable(obj):
        raise PluginError(f"model {name!r} is a {type(obj).__name__}, not a model factory")
    return obj  # type: ignore[return-value]


#: Model factories by name: ``conv4`` (:class:`Conv4`), ``mlp`` (:class:`MLP`) and ``resnet12``
#: (:class:`ResNet12`), each called as ``MODELS.get(name)(in_channels=..., num_classes=...,
#: hidden=..., image_size=...)``; installed packages add theirs through the ``mamlkit.models``
#: entry point group, and ``package.module:factory`` names one directly.
MODELS: Registry[Callable[..., nn.Module]] = Registry(
    "model", entry_points="mamlkit.models", check=_plugin_factory
)
MODELS.add("conv4", Conv4)
MODELS.add("mlp", MLP)
MODELS.add("resnet12", ResNet12)

__all__ = ["MLP", "MODELS", "Conv4", "ResNet12"]
