"""A tiny in-memory few-shot dataset whose pixels encode (class, sample)."""

from __future__ import annotations

import numpy as np
import torch


class FakeDataset:
    """Image of (class c, sample s) is filled with ``1000 * c + s``, so episodes can be decoded."""

    def __init__(self, num_classes: int = 12, samples: int | list[int] = 8) -> None:
        self.num_classes = num_classes
        counts = [samples] * num_classes if isinstance(samples, int) else samples
        self.samples_per_class = np.array(counts, dtype=np.int64)
        self.image_shape = (1, 2, 3)
        self.calls = 0

    def get(self, class_indices, sample_indices) -> torch.Tensor:
        self.calls += 1
        c = torch.as_tensor(class_indices, dtype=torch.int64)
        s = torch.as_tensor(sample_indices, dtype=torch.int64)
        assert bool((s < torch.from_numpy(self.samples_per_class)[c]).all()), "sample out of range"
        values = (1000 * c + s).to(torch.float32)
        return values.view(-1, 1, 1, 1).expand(-1, *self.image_shape).clone()


def decode(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(class, sample) arrays of shape x.shape[:2] from FakeDataset images."""
    values = x[:, :, 0, 0, 0].to(torch.int64).numpy()
    return values // 1000, values % 1000
