"""Seeded augmentation of episodes: the built-in transforms, the sampler's support / query hooks
(reproducible from the seed, resumable, never touching the global RNGs or the task draws), and
``--augment`` (training tasks only, names checked)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from mamlkit.cli import main
from mamlkit.data import EpisodeSampler
from mamlkit.data.augment import (
    AUGMENTATIONS,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRotation90,
    augmentation,
)
from mamlkit.errors import ConfigError
from mamlkit.training import TrainConfig
from mamlkit.training.build import build_dataset, build_sampler
from mamlkit.training.config import EvalConfig
from mamlkit.training.evaluation import evaluation_sampler
from tests.helpers.cifar import make_cifar100
from tests.helpers.training_runs import weights


class Photos:
    """10 classes of 8 random "photos" [3, 8, 8] each (a class's images fixed by its index)."""

    num_classes = 10
    image_shape = (3, 8, 8)
    samples_per_class = np.full(10, 8)

    def __init__(self) -> None:
        self.images = torch.rand(10, 8, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def get(self, class_indices: Tensor, sample_indices: Tensor) -> Tensor:
        return self.images[class_indices, sample_indices].clone()


def sampler(seed: int = 0, **transforms) -> EpisodeSampler:
    return EpisodeSampler(
        Photos(), ways=3, shots=2, queries=3, meta_batch=4, seed=seed, **transforms
    )


def both(names: str = "flip,crop,rot90") -> dict:
    transform = augmentation(names)
    return {"support_transform": transform, "query_transform": transform}


def assert_same_episodes(one: list, two: list) -> None:
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def draw(s: EpisodeSampler, n: int) -> list:
    return [s.sample() for _ in range(n)]


def test_the_same_seed_gives_the_same_augmented_episodes_and_another_seed_others() -> None:
    first, again = draw(sampler(**both()), 3), draw(sampler(**both()), 3)
    assert_same_episodes(first, again)
    other = draw(sampler(seed=1, **both()), 3)
    assert not torch.equal(first[0].support_x, other[0].support_x)


def test_augmentation_changes_the_pixels_but_not_the_drawn_tasks() -> None:
    plain, augmented = draw(sampler(), 3), draw(sampler(**both()), 3)
    identity = draw(sampler(**{k: lambda x, g: x for k in both()}), 3)
    assert_same_episodes(plain, identity)  # the augmentation stream leaves the task stream alone
    for p, a in zip(plain, augmented, strict=True):
        assert torch.equal(p.support_y, a.support_y) and torch.equal(p.query_y, a.query_y)
        assert not torch.equal(p.support_x, a.support_x)
        assert not torch.equal(p.query_x, a.query_x)
        # Every augmented image is its plain image flipped, shifted and rotated: same pixels
        # (or zeros from the padding), so the totals can only shrink.
        assert bool((a.query_x.sum((2, 3, 4)) <= p.query_x.sum((2, 3, 4)) + 1e-4).all())


def test_support_and_query_transforms_apply_to_their_own_set_with_their_own_generator() -> None:
    seen: dict[str, tuple[tuple[int, ...], int]] = {}

    def marker(what: str, offset: float):
        def mark(images: Tensor, generator: torch.Generator) -> Tensor:
            assert isinstance(generator, torch.Generator)
            seen[what] = (tuple(images.shape), generator.initial_seed())
            return images + offset

        return mark

    plain = sampler().sample()
    episode = sampler(
        support_transform=marker("support", 100.0), query_transform=marker("query", -100.0)
    ).sample()
    torch.testing.assert_close(episode.support_x, plain.support_x + 100.0)
    torch.testing.assert_close(episode.query_x, plain.query_x - 100.0)
    assert seen["support"][0] == (4 * 3 * 2, 3, 8, 8)  # the meta-batch's support images
    assert seen["query"][0] == (4 * 3 * 3, 3, 8, 8)
    assert seen["support"][1] != seen["query"][1]
    only_query = sampler(query_transform=marker("query", -100.0)).sample()
    assert torch.equal(only_query.support_x, plain.support_x)
    torch.testing.assert_close(only_query.query_x, plain.query_x - 100.0)


def test_the_global_rngs_are_never_used() -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first = draw(sampler(**both()), 2)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    torch.manual_seed(999)  # another global seed changes nothing
    assert_same_episodes(first, draw(sampler(**both()), 2))


def test_a_resumed_sampler_continues_the_augmented_stream_exactly() -> None:
    uninterrupted = sampler(**both())
    draw(uninterrupted, 2)
    state = json.loads(json.dumps(uninterrupted.state_dict()))  # as a checkpoint stores it
    assert "augment" in state
    expected = draw(uninterrupted, 3)
    resumed = sampler(**both())
    resumed.load_state_dict(state)
    assert_same_episodes(draw(resumed, 3), expected)


def test_a_state_of_an_augmenting_sampler_is_refused_by_a_plain_one_and_back() -> None:
    assert "augment" not in sampler().state_dict()
    with pytest.raises(ValueError, match="augmented its images, but this one does not augment"):
        sampler().load_state_dict(sampler(**both()).state_dict())
    with pytest.raises(ValueError, match="did not augment its images, but this one augments"):
        sampler(**both()).load_state_dict(sampler().state_dict())


def test_a_transform_that_changes_the_shape_or_is_not_callable_is_named() -> None:
    with pytest.raises(ValueError, match=r"query_transform .* must return images of the shape"):
        sampler(query_transform=lambda x, g: x[:, :, :4]).sample()
    with pytest.raises(TypeError, match="support_transform must be callable"):
        sampler(support_transform="flip")


def test_flip_mirrors_a_random_half() -> None:
    images = torch.rand(400, 1, 4, 4)
    out = RandomHorizontalFlip()(images, torch.Generator().manual_seed(0))
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((flipped ^ kept).all())
    assert 150 < int(flipped.sum()) < 250
    assert torch.equal(RandomHorizontalFlip(p=0.0)(images, torch.Generator()), images)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(images, torch.Generator()), images.flip(-1))


def shifted(image: Tensor, dy: int, dx: int) -> Tensor:
    """``image`` [C, H, W] moved down by ``dy`` and right by ``dx``, zeros shifted in."""
    out = torch.zeros_like(image)
    h, w = image.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        :, max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def test_crop_shifts_each_image_by_at_most_the_padding() -> None:
    images = torch.rand(200, 3, 16, 16) + 0.1  # no zeros, so every shift is visible
    out = RandomCrop()(images, torch.Generator().manual_seed(0))  # padding 16 // 8 = 2
    moves = set()
    for image, result in zip(images, out, strict=True):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(result, shifted(image, dy, dx))
        ]
        assert len(found) == 1
        moves.add(found[0])
    assert len(moves) == 25  # every offset occurs
    assert torch.equal(RandomCrop(padding=0)(images, torch.Generator()), images)


@pytest.mark.parametrize(("side", "padding"), [(7, 1), (8, 3), (5, 5), (4, 9)])
def test_crop_is_a_crop_of_the_zero_padded_image(side: int, padding: int) -> None:
    images = torch.rand(300, 2, side, side)
    out = RandomCrop(padding)(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    for image, result in zip(padded, out, strict=True):
        crops = [
            image[:, top : top + side, left : left + side]
            for top in range(2 * padding + 1)
            for left in range(2 * padding + 1)
        ]
        assert any(torch.equal(result, crop) for crop in crops)


def test_rot90_turns_each_square_image_by_a_random_quarter() -> None:
    images = torch.rand(200, 2, 5, 5)
    out = RandomRotation90()(images, torch.Generator().manual_seed(0))
    turns = []
    for image, result in zip(images, out, strict=True):
        turns += [k for k in range(4) if torch.equal(result, torch.rot90(image, k, (1, 2)))]
    assert len(turns) == 200 and set(turns) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="rot90 rotates square images only, got 5x6"):
        RandomRotation90()(torch.rand(2, 1, 5, 6), torch.Generator())


def test_bad_augment_settings_are_refused_with_the_valid_names() -> None:
    assert TrainConfig(augment="crop,flip,flip").augment == "flip,crop"
    assert TrainConfig(augment="none").augment is None
    with pytest.raises(ConfigError, match=r"unknown augmentation 'flp'; did you mean 'flip'\?"):
        TrainConfig(augment="flip,flp")
    with pytest.raises(ConfigError, match="only applies with --augment"):
        TrainConfig(augment_sets="query")
    with pytest.raises(ConfigError, match="augment_sets entry 'queries'"):
        TrainConfig(augment="flip", augment_sets="queries")
    with pytest.raises(ConfigError, match="regression dataset: --augment"):
        config = TrainConfig(dataset="sinusoid", model="mlp", augment="flip")
        build_sampler(config, build_dataset(config, "train"), queries=5, meta_batch=2, seed=0)
    for name in AUGMENTATIONS:  # every built-in one works on a batch of images
        out = augmentation(name)(torch.rand(3, 3, 8, 8), torch.Generator())
        assert out.shape == (3, 3, 8, 8)


def test_the_command_line_names_a_bad_augmentation_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["train", "--out", str(tmp_path / "run"), "--augment", "flip,mixup"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "unknown augmentation 'mixup'" in error
    assert "flip, crop, rot90" in error


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar-data")
    make_cifar100(root, per_class=16, in_test=4)
    return root


def test_only_the_training_tasks_are_augmented(cifar_root: Path) -> None:
    config = TrainConfig(
        dataset="cifar-fs", data_root=str(cifar_root), augment="flip", augment_sets="support"
    )
    train = build_sampler(
        config, build_dataset(config, "train"), queries=2, meta_batch=2, seed=0, augment=True
    )
    assert train.support_transform is not None and train.query_transform is None
    test = evaluation_sampler(config, build_dataset(config, "test"), EvalConfig(queries=2))
    assert not test.augments


def train_args(root: Path, out: Path, iterations: int, augment: str = "flip,crop,rot90") -> list:
    return [
        "train", "--dataset", "cifar-fs", "--data-root", str(root), "--out", str(out),
        "--iterations", str(iterations), "--checkpoint-every", "2", "--ways", "3", "--shots", "1",
        "--queries", "2", "--meta-batch", "2", "--hidden", "4", "--augment", augment,
        "--no-progress", "--device", "cpu", "--threads", "1",
    ]  # fmt: skip


def test_a_resumed_augmented_run_trains_exactly_as_an_uninterrupted_one(
    cifar_root: Path, tmp_path: Path
) -> None:
    straight, resumed, plain = tmp_path / "straight", tmp_path / "resumed", tmp_path / "plain"
    assert main(train_args(cifar_root, straight, 4)) == 0
    assert main(train_args(cifar_root, resumed, 2)) == 0
    assert main(["train", "--resume", str(resumed), "--iterations", "4", "--no-progress"]) == 0
    for name, tensor in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[name], tensor, rtol=0, atol=0)
    assert main(train_args(cifar_root, plain, 4, augment="none")) == 0
    assert any(not torch.equal(weights(plain)[n], t) for n, t in weights(straight).items())
