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

import inspect
from collections.abc import Callable
from typing import Any

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


def _option_value(text: str) -> object:
    """A model option's value: ``true``/``false``, an int, a float, else the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_model(text: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    """The factory and keyword options a model name stands for: ``"conv4"``, or a variant
    ``"conv4[downsample=stride]"`` whose options are keyword arguments of the factory (not its
    size arguments, which a run sets). Unknown options are errors naming the ones it takes.

    >>> from mamlkit.models import parse_model
    >>> factory, options = parse_model("conv4[downsample=stride]")
    >>> factory.__name__, options
    ('Conv4', {'downsample': 'stride'})
    >>> parse_model("conv4[downsampel=stride]")
    Traceback (most recent call last):
        ...
    ValueError: model 'conv4[downsampel=stride]': unknown option 'downsampel'; conv4 takes: \
track_running_stats, downsample
    """
    if "[" not in text:
        return MODELS.get(text), {}
    base, _, rest = text.partition("[")
    if not rest.endswith("]"):
        raise ValueError(f"model {text!r}: a variant is written name[option=value,...]")
    factory = MODELS.get(base.strip())
    sizes = ("in_channels", "num_classes", "hidden", "image_size")
    accepted = [name for name in inspect.signature(factory).parameters if name not in sizes]
    options: dict[str, Any] = {}
    for item in rest[:-1].split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"model {text!r}: expected option=value, got {item.strip()!r}")
        if key not in accepted:
            raise ValueError(
                f"model {text!r}: unknown option {key!r}; {base.strip()} takes: "
                f"{', '.join(accepted) or 'no options'}"
            )
        options[key] = _option_value(value)
    return factory, options


__all__ = ["MLP", "MODELS", "Conv4", "ResNet12", "parse_model"]
