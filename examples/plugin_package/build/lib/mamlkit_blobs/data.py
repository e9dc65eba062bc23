"""Blobs: few-shot classes that are Gaussian blobs in a small feature space, generated.

A mamlkit dataset factory takes ``root``, ``split`` and ``download`` (and may take more) and
returns an object with ``num_classes``, ``image_shape`` (the shape of one example),
``samples_per_class`` and ``get(class_indices, sample_indices)``; mamlkit's episode sampler does
the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

SPLITS = {"train": 0, "val": 1, "test": 2}


class Blobs:
    """Gaussian blobs as few-shot classes: each class is a random centre in a small feature space.

    Each class is a random centre (fixed by the split) plus unit-variance noise; a sample's noise
    is fixed by its class and index, so a class always serves the same points.
    """

    def __init__(
        self,
        root: str | None = None,
        split: str = "train",
        *,
        download: bool = False,
        classes: int = 40,
        samples: int = 20,
        features: int = 8,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown blobs split {split!r}; valid splits: {', '.join(SPLITS)}")
        self.split = split
        self.num_classes = classes
        self.image_shape = (features,)
        self.samples_per_class = np.full(classes, samples, dtype=np.int64)
        rng = np.random.default_rng(SPLITS[split])
        self._centres = torch.from_numpy(rng.normal(0.0, 3.0, (classes, features))).float()
        noise = rng.normal(0.0, 1.0, (classes, samples, features))
        self._noise = torch.from_numpy(noise).float()

    def get(self, class_indices: Any, sample_indices: Any) -> torch.Tensor:
        """The points ``sample_indices[i]`` of classes ``class_indices[i]``: ``[n, features]``."""
        classes = torch.as_tensor(class_indices, dtype=torch.int64)
        samples = torch.as_tensor(sample_indices, dtype=torch.int64)
        return self._centres[classes] + self._noise[classes, samples]
