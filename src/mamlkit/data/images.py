"""How an image dataset turns an image file into model input: one :class:`ImageFormat`.

Every image dataset decodes its files with its :class:`ImageFormat` (colour mode, square size,
inversion) into uint8 arrays ``[C, S, S]`` and serves them as float32 in [0, 1] (optionally
normalised per channel) with :meth:`ImageFormat.to_tensor`. ``mamlkit predict`` reads a user's
support and query images with the same format as the run's dataset, found without the data
through the factory's ``image_format_for`` (:func:`reads_images`, :func:`dataset_image_format`),
so new images are preprocessed exactly as the training images were.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps

#: The colour modes of an :class:`ImageFormat` and the channels each gives.
CHANNELS: dict[str, int] = {"rgb": 3, "grayscale": 1}

_PIL_MODES = {"rgb": "RGB", "grayscale": "L"}


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit greyscale image (PNG or TIFF, Pillow mode ``I;16*`` or ``I``) scaled to 8-bit
    ``L``: Pillow's own conversion clips every value above 255, so such images came out white.
    Other images are returned as they are."""
    if not (image.mode.startswith("I;16") or image.mode == "I"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "I" and values.max(initial=0) <= 255:
        return image  # 8-bit values stored in 32 bits: Pillow converts these correctly
    scaled = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)  # 65535 / 257 = 255
    return Image.fromarray(scaled)  # uint8 [H, W]: mode "L"


F = TypeVar("F", bound=Callable[..., Any])


class ImageFileError(ValueError):
    """A file that cannot be read as an image; the message names the file and the fix."""


@dataclass(frozen=True)
class ImageFormat:
    """How one image file becomes model input: colour mode, square side, inversion, scaling.

    Attributes:
        image_size: side of the square the image is resized to (Lanczos; the aspect ratio is
            not kept, as in the mini-ImageNet and Omniglot preprocessing of the literature).
        channels: "rgb" (3 channels) or "grayscale" (1).
        invert: ``255 - pixel`` after conversion (Omniglot: strokes 1, background 0).
        mean, std: per-channel statistics subtracted and divided by after scaling to [0, 1]
            (``None``: pixels stay in [0, 1]).
        photos: files of any origin: the EXIF orientation is applied, transparency is laid on
            white, and large JPEGs are decoded at a reduced scale first (Pillow's draft mode).

    >>> from PIL import Image
    >>> from mamlkit.data.images import ImageFormat
    >>> fmt = ImageFormat(image_size=4, channels="grayscale", invert=True)
    >>> pixels = fmt.pixels(Image.new("RGB", (10, 6), (255, 255, 255)))
    >>> pixels.shape, pixels.dtype, int(pixels.max())
    ((1, 4, 4), dtype('uint8'), 0)
    >>> fmt.to_tensor(pixels[None]).shape, fmt.shape
    (torch.Size([1, 1, 4, 4]), (1, 4, 4))
    """

    image_size: int
    channels: str = "rgb"
    invert: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    photos: bool = False

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"image_size must be a positive integer, got {size!r}")
        if self.channels not in CHANNELS:
            valid = ", ".join(repr(c) for c in CHANNELS)
            raise ValueError(f"channels must be one of {valid}, got {self.channels!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, S, S)``: the shape of one image as model input."""
        return (CHANNELS[self.channels], self.image_size, self.image_size)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """One decoded image as uint8 ``[C, S, S]``: converted, resized and (maybe) inverted."""
        size = (self.image_size, self.image_size)
        if self.photos:
            if image.format == "JPEG":
                image.draft(image.mode, size)  # decode at a reduced scale, never below size
            image = ImageOps.exif_transpose(image) or image
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        converted = _eight_bit(image).convert(_PIL_MODES[self.channels])
        if converted.size != size:
            converted = converted.resize(size, Image.LANCZOS)
        array = np.asarray(converted, dtype=np.uint8)
        if self.invert:
            array = 255 - array
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def read(self, path: str | os.PathLike[str]) -> np.ndarray:
        """:meth:`pixels` of the image file ``path``; an :class:`ImageFileError` naming the file
        when it cannot be decoded."""
        try:
            with Image.open(path) as image:
                return self.pixels(image)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
            raise ImageFileError(
                f"cannot read {path} as an image ({type(e).__name__}: {e}); remove it or convert "
                f"it to PNG or JPEG"
            ) from e

    def to_tensor(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 images ``[n, C, S, S]`` as the float32 model input: ``/ 255``, then
        ``(x - mean) / std`` per channel when the format has statistics."""
        x = torch.as_tensor(pixels).to(torch.float32)
        x.div_(255.0)
        if self.mean is not None and self.std is not None:
            channels = len(self.mean)
            mean = torch.tensor(self.mean, dtype=torch.float32).view(1, channels, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32).view(1, channels, 1, 1)
            x.sub_(mean).div_(std)
        return x

    def load(self, paths: list[Path]) -> torch.Tensor:
        """The image files ``paths`` as one float32 batch ``[n, C, S, S]``."""
        array = np.empty((len(paths), *self.shape), dtype=np.uint8)
        for i, path in enumerate(paths):
            array[i] = self.read(path)
        return self.to_tensor(array)


def reads_images(format_for: Callable[..., ImageFormat]) -> Callable[[F], F]:
    """Mark a dataset factory with ``format_for``: the :class:`ImageFormat` its datasets decode
    with, from the same options the factory takes (e.g. ``image_size``), without any data.

    ``mamlkit predict`` uses it to read new images as a run's dataset read its own; a plug-in
    image dataset gets the same by decorating its factory.

    >>> from mamlkit.data.images import ImageFormat, dataset_image_format, reads_images
    >>> @reads_images(lambda image_size=32: ImageFormat(image_size, "grayscale"))
    ... def make_tiny(root=None, split="train", *, image_size=32):
    ...     ...
    >>> dataset_image_format(make_tiny, {"image_size": 20, "channels": None}).shape
    (1, 20, 20)
    """

    def mark(factory: F) -> F:
        factory.image_format_for = format_for  # type: ignore[attr-defined]
        return factory

    return mark


def dataset_image_format(factory: Any, options: dict[str, Any]) -> ImageFormat | None:
    """The :class:`ImageFormat` of the datasets ``factory`` builds with ``options`` (those its
    ``image_format_for`` takes; ``None`` values are left to its defaults), or ``None`` for a
    factory that does not say (not an image dataset, or one not marked with
    :func:`reads_images`)."""
    format_for = getattr(factory, "image_format_for", None)
    if format_for is None:
        return None
    accepted = inspect.signature(format_for).parameters
    given = {k: v for k, v in options.items() if k in accepted and v is not None}
    return format_for(**given)
