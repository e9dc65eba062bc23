"""Conv4: its output shape, parameter names and batch-statistics BatchNorm."""

from __future__ import annotations

import pytest
import torch

from mamlkit import Conv4


def test_conv4_shapes_and_parameter_names() -> None:
    model = Conv4(in_channels=3, num_classes=7, hidden=8, image_size=84)
    assert model(torch.rand(2, 3, 84, 84)).shape == (2, 7)
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "features.block1.conv.weight" and names[-1] == "head.bias"
    assert not list(model.buffers()), "BatchNorm must use batch statistics (no running buffers)"
    with pytest.raises(ValueError, match="at least 16x16"):
        Conv4(image_size=8)
