"""Every registered dataset and model, through the path ``mamlkit train`` takes: the
meta-gradient against central finite differences in float64 on a tiny model, a gradient for
every learnable tensor, and a few iterations on a tiny problem lowering the loss.

(Every algorithm gets the same in ``tests/algorithms/test_meta_gradients.py`` and
``tests/algorithms/test_every_algorithm_learns.py``.)
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from mamlkit import MODELS, MetaLearner, fit
from mamlkit.data import DATASETS
from mamlkit.training import TrainConfig
from mamlkit.training.build import build_dataset, build_learner, build_sampler, dataset_task
from tests.helpers.cifar import make_cifar100
from tests.helpers.conv4_reference import cancelled_by_batch_norm
from tests.helpers.finite_differences import central_differences_agree
from tests.helpers.image_folders import make_class_folders
from tests.helpers.miniimagenet import make_miniimagenet
from tests.helpers.tiny_models import TINY, build, episode

#: A tiny run of each dataset: config values (the tests add data_root, meta-batch and seed).
TINY_RUNS = {
    "omniglot": {"model": "conv4", "ways": 3, "shots": 1, "queries": 2, "hidden": 2},
    "miniimagenet": {"model": "conv4", "ways": 3, "shots": 1, "queries": 2, "hidden": 2},
    "sinusoid": {"model": "mlp", "shots": 5, "queries": 5, "hidden": 8},
    "cifar-fs": {"model": "conv4", "ways": 3, "shots": 1, "queries": 2, "hidden": 2},
    "fc100": {"model": "conv4", "ways": 3, "shots": 1, "queries": 2, "hidden": 2},
    "folder": {
        "model": "conv4",
        "ways": 3,
        "shots": 1,
        "queries": 2,
        "hidden": 2,
        "image_size": 16,
    },
}


def test_every_registered_dataset_has_a_tiny_run() -> None:
    assert set(TINY_RUNS) == set(DATASETS.names())


@pytest.fixture
def data_root(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    name = request.node.callspec.params["name"]
    if name == "omniglot":
        return str(request.getfixturevalue("omniglot_root"))
    if name == "miniimagenet":
        make_miniimagenet(tmp_path / "data", classes=3, images=3)
        return str(tmp_path / "data")
    if name == "folder":
        return str(make_class_folders(tmp_path / "train", classes=3, images=3).parent)
    if name in ("cifar-fs", "fc100"):
        return str(make_cifar100(tmp_path / "data", per_class=3, in_test=1).parent.parent)
    return None


def tiny_run(
    name: str, data_root: str | None, batches: int = 2, dtype: torch.dtype = torch.float64
):
    """The learner and ``batches`` fixed meta-batches of 2 tasks of dataset ``name``, in
    ``dtype``."""
    config = TrainConfig(
        dataset=name, data_root=data_root, meta_batch=2, inner_lr=0.1, progress=False,
        **TINY_RUNS[name],
    )  # fmt: skip
    dataset = build_dataset(config, "train")
    sampler = build_sampler(config, dataset, queries=config.queries, meta_batch=2, seed=0)
    task = dataset_task(dataset)
    outputs = getattr(dataset, "num_outputs", None) if task == "regression" else None
    learner = build_learner(config, dataset.image_shape, task=task, num_outputs=outputs).to(dtype)
    data = [
        tuple(t.to(dtype) if t.is_floating_point() else t for t in batch)
        for batch in itertools.islice(sampler, batches)
    ]
    return learner, data


def every_learnable_gets_a_gradient(learner: MetaLearner, data: tuple) -> None:
    loss, _ = learner.meta_loss(*data)
    loss.backward()
    for name, param in learner.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if not cancelled_by_batch_norm(name):
            assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def training_lowers_the_loss(learner: MetaLearner, data: list, iterations: int = 20) -> None:
    """A few Adam steps on a fixed set of meta-batches lower their meta-loss."""
    optimiser = torch.optim.Adam(learner.parameters(), lr=0.03)
    losses = fit(learner, itertools.cycle(data), optimiser, iterations=iterations, progress=False)
    start = sum(losses[: len(data)]) / len(data)
    end = sum(losses[-len(data) :]) / len(data)
    assert end < 0.9 * start, losses


@pytest.mark.parametrize("name", sorted(TINY_RUNS))
def test_every_dataset_meta_gradient_matches_finite_differences(
    name: str, data_root: str | None
) -> None:
    learner, data = tiny_run(name, data_root, batches=1)
    central_differences_agree(learner, data[0])
    every_learnable_gets_a_gradient(learner, data[0])


@pytest.mark.parametrize("name", sorted(TINY_RUNS))
def test_every_dataset_trains(name: str, data_root: str | None) -> None:
    learner, data = tiny_run(name, data_root, dtype=torch.float32)
    training_lowers_the_loss(learner, data)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_gets_gradients_everywhere_and_trains(name: str) -> None:
    assert set(TINY) == set(MODELS.names())
    model, shape = build(name)
    learner = MetaLearner(model, "maml", inner_lr=0.1, inner_steps=1).double()
    data = [episode(shape), tuple(t.flip(0) for t in episode(shape))]
    every_learnable_gets_a_gradient(learner, data[0])
    training_lowers_the_loss(learner, data)
