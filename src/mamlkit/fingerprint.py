"""SHA-256 fingerprints of tensors and episode streams: proof that two runs saw the same data.

A comparison is fair only if every algorithm trains on the same episodes from the same initial
weights and is tested on the same tasks; runs record these digests so anyone can check it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch


class TensorDigest:
    """Incremental SHA-256 over the dtype, shape and bytes of a sequence of tensors.

    Equal digests mean the same tensors in the same order (same dtypes, shapes and values);
    the device does not matter.

    >>> import torch
    >>> from mamlkit.fingerprint import TensorDigest
    >>> a, b = TensorDigest(), TensorDigest()
    >>> a.update(torch.zeros(2), torch.ones(3))
    >>> b.update(torch.zeros(2))
    >>> b.update(torch.ones(3))
    >>> a.hexdigest() == b.hexdigest()
    True
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, *tensors: torch.Tensor) -> None:
        """Add ``tensors``, in order, to the digest."""
        for tensor in tensors:
            data = tensor.detach().to("cpu").contiguous()
            self._hash.update(f"{data.dtype}{tuple(data.shape)}".encode())
            # reshape(-1): a 0-dim tensor (e.g. BatchNorm's step counter) cannot be viewed as bytes
            raw = data.reshape(-1).view(torch.uint8) if data.numel() else None
            self._hash.update(raw.numpy().tobytes() if raw is not None else b"")

    def hexdigest(self) -> str:
        """The SHA-256 so far, as 64 hex digits (more updates may follow)."""
        return self._hash.hexdigest()


def digest_state(state: dict[str, torch.Tensor]) -> str:
    """Fingerprint of a state dict (names and tensors, in name order).

    >>> import torch
    >>> from mamlkit.fingerprint import digest_state
    >>> digest_state({"w": torch.zeros(2)}) == digest_state({"w": torch.zeros(2)})
    True
    >>> digest_state({"w": torch.zeros(2)}) == digest_state({"w": torch.zeros(2).double()})
    False
    """
    digest = TensorDigest()
    for name in sorted(state):
        digest._hash.update(name.encode())
        digest.update(state[name])
    return digest.hexdigest()


def digesting(batches: Iterable[Any], digest: TensorDigest) -> Iterator[Any]:
    """Yield ``batches`` unchanged while adding every tensor of each batch to ``digest``.

    How a run fingerprints the task stream it trains on (non-tensor items are skipped).

    >>> import torch
    >>> from mamlkit.fingerprint import TensorDigest, digesting
    >>> digest = TensorDigest()
    >>> list(digesting([(torch.zeros(2), "label")], digest))
    [(tensor([0., 0.]), 'label')]
    """
    for batch in batches:
        digest.update(*(t for t in batch if isinstance(t, torch.Tensor)))
        yield batch
