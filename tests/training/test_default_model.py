"""The model a run trains when none is given follows its dataset: images to Conv4, the
sinusoid's vectors to an MLP; the resolved name is what the run records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from mamlkit.cli import main
from mamlkit.data import DATASETS
from mamlkit.errors import ConfigError
from mamlkit.registry import UnknownNameError
from mamlkit.training import TrainConfig, build_config, build_learner
from mamlkit.training.build import registered_task

#: An input of each kind of task: classification datasets give images, regression ones (the
#: sinusoid) vectors.
INPUTS = {"classification": (3, 32, 32), "regression": (1,)}


@pytest.mark.parametrize("name", sorted(DATASETS.names()))
def test_the_default_model_takes_the_dataset_inputs(name: str) -> None:
    config = TrainConfig(dataset=name, hidden=4)
    task = registered_task(name)
    learner = build_learner(config, INPUTS[task.value], task=task)
    outputs = learner(torch.zeros(2, *INPUTS[task.value]))
    assert outputs.shape == (2, config.ways)
    assert config.to_dict()["model"] == config.model  # resolved, as config.yaml records it


def test_a_given_model_is_kept() -> None:
    assert TrainConfig(dataset="sinusoid", model="mlp[layers=3]").model == "mlp[layers=3]"
    assert TrainConfig(dataset="omniglot", model="resnet12").model == "resnet12"
    with pytest.raises(ConfigError, match="takes inputs of rank 3"):
        build_learner(TrainConfig(dataset="sinusoid", model="conv4"), (1,))


def test_a_config_file_without_model_resolves_it_and_a_bad_dataset_is_named() -> None:
    assert build_config(TrainConfig, {"dataset": "sinusoid"}).model == "mlp"
    with pytest.raises(UnknownNameError, match="did you mean 'sinusoid'"):
        TrainConfig(dataset="sinusiod")


def test_train_sinusoid_without_model_records_mlp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    options = ["--hidden", "4", "--shots", "3", "--queries", "3", "--meta-batch", "2"]
    short = ["--iterations", "1", "--no-progress", "--device", "cpu"]
    code = main(["train", "--dataset", "sinusoid", *options, *short, "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"] == "mlp" and saved["dataset"] == "sinusoid"
