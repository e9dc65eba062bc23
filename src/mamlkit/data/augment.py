"""Seeded image augmentation of few-shot episodes: random flips, shifted crops, 90° rotations.

A *transform* is any callable ``transform(images, generator) -> images``: ``images`` is a float
tensor ``[n, C, H, W]`` (every support, or every query, image of one meta-batch) and
``generator`` a ``torch.Generator`` that :class:`~mamlkit.data.EpisodeSampler` seeds from its
own seed for every meta-batch. A transform draws all its randomness from that generator, never
from the global RNGs, so the same seed gives the same augmented episodes and a resumed sampler
the same ones as an uninterrupted sampler. It returns a tensor of the same shape (it may work
in place). The built-in transforms are plain torch, vectorised over the batch, and each image
draws its own random choice:

* ``flip`` (:class:`RandomHorizontalFlip`): mirror left-right with probability 1/2.
* ``crop`` (:class:`RandomCrop`): zero-pad every side by ``padding`` (default a side // 8: 4
  pixels at 32x32, 10 at 84x84, 3 at 28x28) and crop back to the original size at a uniform
  random offset, i.e. shift the image by up to ``padding`` pixels each way.
* ``rot90`` (:class:`RandomRotation90`): rotate by 0, 90, 180 or 270 degrees, uniformly (square
  images only).

Omniglot: a mirrored or rotated character is often another character (Omniglot's rotated
classes are new classes, see :class:`~mamlkit.data.Omniglot`), so ``flip`` and ``rot90`` change
what a class is rather than how it looks; only ``crop`` (a small shift) keeps the class.

>>> import torch
>>> from mamlkit.data.augment import augmentation
>>> transform = augmentation("crop,flip")
>>> transform
Compose(RandomHorizontalFlip(p=0.5), RandomCrop(padding=None))
>>> images = torch.rand(6, 3, 32, 32)
>>> out = transform(images, torch.Generator().manual_seed(0))
>>> out.shape
torch.Size([6, 3, 32, 32])
>>> torch.equal(out, transform(images, torch.Generator().manual_seed(0)))
True
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

#: What an episode transform is: ``(images [n, C, H, W], generator) -> images`` of that shape.
Transform = Callable[[Tensor, torch.Generator], Tensor]

#: The value of an augmentation option that names no transform.
NO_AUGMENTATION = "none"


def _check_images(images: Tensor, name: str) -> tuple[int, int, int, int]:
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} augments images [n, C, H, W], got {shape}")
    n, c, h, w = images.shape
    return n, c, h, w


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p`` (``flip``).

    >>> import torch
    >>> from mamlkit.data.augment import RandomHorizontalFlip
    >>> x = torch.arange(4.0).view(1, 1, 2, 2)
    >>> RandomHorizontalFlip(p=1.0)(x, torch.Generator())[0, 0]
    tensor([[1., 0.],
            [3., 2.]])
    """

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability p must be a number in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images`` with a random subset of them mirrored."""
        n = _check_images(images, "RandomHorizontalFlip")[0]
        flip = torch.rand(n, generator=generator, device=generator.device) < self.p
        rows = flip.to(images.device).nonzero().flatten()
        out = images.clone()
        out[rows] = images.index_select(0, rows).flip(-1)
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Shift each image by up to ``padding`` pixels each way (``crop``): zero-pad all four
    sides by ``padding``, then crop the original size at a uniform random offset (as CIFAR's
    usual ``RandomCrop(32, padding=4)``). ``padding=None``: a side // 8 of the images, at least
    1 (4 at 32x32, 10 at 84x84, 3 at 28x28).

    >>> import torch
    >>> from mamlkit.data.augment import RandomCrop
    >>> x = torch.ones(2, 1, 8, 8)
    >>> out = RandomCrop(padding=2)(x, torch.Generator().manual_seed(1))
    >>> out.shape, bool(((out == 0) | (out == 1)).all())
    (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, padding: int | None = None) -> None:
        if padding is not None and (
            isinstance(padding, bool) or not isinstance(padding, int) or padding < 0
        ):
            raise ValueError(f"crop padding must be a non-negative integer, got {padding!r}")
        self.padding = padding

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images``, each shifted by its own random offset (the border filled with zeros)."""
        n, _, h, w = _check_images(images, "RandomCrop")
        pad = max(1, min(h, w) // 8) if self.padding is None else self.padding
        device = generator.device
        top = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
        left = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
        if pad == 0:
            return images
        out = torch.zeros_like(images)
        offset = (top * (2 * pad + 1) + left).to(images.device)
        for key in torch.unique(offset).tolist():  # one slice copy per offset in use
            rows = (offset == key).nonzero().flatten()
            dy, dx = divmod(key, 2 * pad + 1)
            (from_y, to_y), (from_x, to_x) = _span(dy - pad, h), _span(dx - pad, w)
            out[rows, :, to_y, to_x] = images[:, :, from_y, from_x].index_select(0, rows)
        return out

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"


def _span(corner: int, size: int) -> tuple[slice, slice]:
    """Where a crop of side ``size`` whose corner is ``corner`` pixels into the image (negative:
    into the zero border) takes its pixels from, and where they land in the crop."""
    start, stop = min(max(corner, 0), size), max(size + min(corner, 0), 0)
    return slice(start, max(stop, start)), slice(start - corner, max(stop, start) - corner)


class RandomRotation90:
    """Rotate each (square) image by 0, 90, 180 or 270 degrees counter-clockwise, uniformly
    (``rot90``).

    >>> import torch
    >>> from mamlkit.data.augment import RandomRotation90
    >>> x = torch.rand(16, 1, 4, 4)
    >>> out = RandomRotation90()(x, torch.Generator().manual_seed(0))
    >>> rotations = [torch.rot90(x, k, (2, 3)) for k in range(4)]
    >>> all(any(torch.equal(out[i], r[i]) for r in rotations) for i in range(16))
    True
    """

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images``, each rotated by its own random multiple of 90 degrees."""
        n, _, h, w = _check_images(images, "RandomRotation90")
        if h != w:
            raise ValueError(
                f"rot90 rotates square images only, got {h}x{w}; leave rot90 out of the "
                f"augmentations for this dataset"
            )
        turns = torch.randint(0, 4, (n,), generator=generator, device=generator.device)
        turns = turns.to(images.device)
        out = images.clone()
        for k in (1, 2, 3):
            rows = (turns == k).nonzero().flatten()
            if rows.numel():
                out[rows] = torch.rot90(images.index_select(0, rows), k, dims=(-2, -1))
        return out

    def __repr__(self) -> str:
        return "RandomRotation90()"


class Compose:
    """Apply ``transforms`` in order, all drawing from the one generator.

    >>> import torch
    >>> from mamlkit.data.augment import Compose, RandomHorizontalFlip
    >>> twice = Compose([RandomHorizontalFlip(p=1.0), RandomHorizontalFlip(p=1.0)])
    >>> x = torch.rand(2, 1, 3, 3)
    >>> torch.equal(twice(x, torch.Generator()), x)
    True
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)
        for transform in self.transforms:
            if not callable(transform):
                raise TypeError(f"a transform must be callable, got {type(transform).__name__}")

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``images`` through every transform in turn."""
        for transform in self.transforms:
            images = transform(images, generator)
        return images

    def __repr__(self) -> str:
        return f"Compose({', '.join(repr(t) for t in self.transforms)})"


#: The built-in augmentations by name (the ``--augment`` values), in the order they are applied.
AUGMENTATIONS: dict[str, Callable[[], Transform]] = {
    "flip": RandomHorizontalFlip,
    "crop": RandomCrop,
    "rot90": RandomRotation90,
}


def augmentation_names(value: str | None) -> tuple[str, ...]:
    """The built-in augmentations a comma-separated ``value`` names, in :data:`AUGMENTATIONS`
    order (so ``"crop,flip"`` and ``"flip,crop"`` are one augmentation); ``None``, ``""`` and
    ``"none"`` name none. An unknown name is a ``ValueError`` listing the valid ones.

    >>> from mamlkit.data.augment import augmentation_names
    >>> augmentation_names("crop, flip")
    ('flip', 'crop')
    >>> augmentation_names("none")
    ()
    >>> augmentation_names("flip,crp")
    Traceback (most recent call last):
        ...
    ValueError: unknown augmentation 'crp'; did you mean 'crop'? (augmentations: flip, crop,
    rot90, comma-separated, or none)
    """
    if value is None:
        return ()
    names = {name.strip() for name in value.split(",") if name.strip()}
    names.discard(NO_AUGMENTATION)
    for name in sorted(names - set(AUGMENTATIONS)):
        close = difflib.get_close_matches(name, AUGMENTATIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown augmentation {name!r}{hint} (augmentations: {', '.join(AUGMENTATIONS)}, "
            f"comma-separated, or {NO_AUGMENTATION})"
        )
    return tuple(name for name in AUGMENTATIONS if name in names)


def augmentation(value: str | None) -> Compose | None:
    """The transform the built-in augmentations named by ``value`` make together (see
    :func:`augmentation_names`), or ``None`` when it names none."""
    names = augmentation_names(value)
    if not names:
        return None
    return Compose([AUGMENTATIONS[name]() for name in names])
