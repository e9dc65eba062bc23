"""Argument checks shared across the package, so every bad value gets the same clear message."""

from __future__ import annotations

import numbers


def positive_int(name: str, value: object) -> int:
    """``value`` as an ``int`` if it is a positive integer (not a bool), else a ``ValueError``.

    >>> from mamlkit.checks import positive_int
    >>> positive_int("ways", 5)
    5
    >>> positive_int("ways", True)
    Traceback (most recent call last):
        ...
    ValueError: ways must be a positive integer, got True
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


#: Four 2x2 max-pools (Conv4, ResNet-12) need images of at least 16x16.
FOUR_POOLS = (16, "four 2x2 pools")


def model_sizes(
    model: str, *, min_image_size: tuple[int, str] | None = None, **sizes: object
) -> None:
    """Check a model's size arguments: every one a positive integer, and ``image_size`` at least
    ``min_image_size = (side, reason)``. Errors name the model and the argument."""
    for name, value in sizes.items():
        positive_int(f"{model} {name}", value)
    if min_image_size is not None and sizes["image_size"] < min_image_size[0]:  # type: ignore[operator]
        side, reason = min_image_size
        raise ValueError(
            f"{model} needs images of at least {side}x{side} ({reason}), got {sizes['image_size']}"
        )
