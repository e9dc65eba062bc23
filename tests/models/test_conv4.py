"""Conv4: its output shape, parameter names and batch-statistics BatchNorm."""

from __future__ import annotations

import pytest
import torch

from mamlkit import Conv4
from mamlkit.errors import ConfigError
from mamlkit.models import parse_model
from mamlkit.training import TrainConfig, build_learner


def test_conv4_shapes_and_parameter_names() -> None:
    model = Conv4(in_channels=3, num_classes=7, hidden=8, image_size=84)
    assert model(torch.rand(2, 3, 84, 84)).shape == (2, 7)
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "features.block1.conv.weight" and names[-1] == "head.bias"
    assert not list(model.buffers()), "BatchNorm must use batch statistics (no running buffers)"
    with pytest.raises(ValueError, match="at least 16x16"):
        Conv4(image_size=8)


def test_strided_conv4_is_finn_et_als_omniglot_network() -> None:
    """``downsample="stride"``: the same parameters, stride-2 convolutions and no pooling, and a
    head on the features averaged over positions (so it takes any image size)."""
    pooled, strided = Conv4(hidden=8), Conv4(hidden=8, downsample="stride")
    assert [(n, p.shape) for n, p in strided.named_parameters()] == [
        (n, p.shape) for n, p in pooled.named_parameters()
    ]
    assert strided.features.block1.conv.stride == (2, 2)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules())
    x = torch.rand(3, 1, 28, 28)
    features = strided.features(x)
    assert features.shape == (3, 8, 2, 2)  # 28 -> 14 -> 7 -> 4 -> 2
    torch.testing.assert_close(strided(x), strided.head(features.mean(dim=(2, 3))))
    assert strided.head.in_features == 8
    assert Conv4(hidden=8, image_size=40, downsample="stride")(torch.rand(2, 1, 40, 40)).shape == (
        2,
        5,
    )
    with pytest.raises(ValueError, match="downsample must be one of pool, stride, got 'avg'"):
        Conv4(downsample="avg")


def test_model_variants_pass_options_and_refuse_unknown_ones() -> None:
    config = TrainConfig(model="conv4[downsample=stride]", hidden=4)
    learner = build_learner(config, (1, 28, 28))
    assert learner.model.features.block2.conv.stride == (2, 2)
    assert learner.model.head.in_features == 4
    with pytest.raises(ConfigError, match="unknown option 'pool'; conv4 takes: "):
        TrainConfig(model="conv4[pool=false]")
    with pytest.raises(ConfigError, match="a variant is written name\\[option=value"):
        TrainConfig(model="conv4[downsample=stride")
    assert parse_model("conv4") == (Conv4, {})
    assert parse_model("conv4[track_running_stats=true]")[1] == {"track_running_stats": True}
