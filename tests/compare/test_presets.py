"""Compare presets: each resolves for every algorithm, the paper values are the cited ones, and
``mamlkit train --preset`` trains with them (flags win)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mamlkit.algorithms import ALGORITHMS
from mamlkit.cli import build_parser, main, train_config
from mamlkit.compare import COMPARE_PRESETS, plan_algorithms
from mamlkit.compare.presets import PAPER_SETTINGS
from mamlkit.training import EvalConfig, TrainConfig, build_config

OMNIGLOT_DRAWINGS = 20  # drawings per character: shots + queries may not exceed it


PAIRS = [
    (preset, algorithm)
    for preset in COMPARE_PRESETS
    for algorithm in dict.fromkeys([*COMPARE_PRESETS.get(preset).algorithms, *ALGORITHMS])
]


@pytest.mark.parametrize(("preset_name", "algorithm"), PAIRS)
def test_every_preset_resolves_for_every_algorithm(preset_name: str, algorithm: str) -> None:
    preset = COMPARE_PRESETS.get(preset_name)
    train = build_config(TrainConfig, preset.train_values(algorithm))
    evaluation = build_config(EvalConfig, preset.evaluation_values(algorithm))
    assert train.algorithm == algorithm
    if train.dataset == "omniglot":
        assert train.shots + train.queries <= OMNIGLOT_DRAWINGS
        assert train.shots + evaluation.queries <= OMNIGLOT_DRAWINGS
    if ALGORITHMS.get(algorithm).update_rule == "per_tensor_per_step":
        # learned per-step rates exist only for the trained steps
        assert evaluation.inner_steps in (None, train.inner_steps)
    plan = plan_algorithms(preset, [algorithm])[algorithm]
    assert plan["train"]["ways"] == train.ways and plan["train"]["shots"] == train.shots


@pytest.mark.parametrize("preset_name", list(COMPARE_PRESETS))
def test_preset_names_only_registered_algorithms(preset_name: str) -> None:
    preset = COMPARE_PRESETS.get(preset_name)
    assert preset.name == preset_name
    named = [*preset.algorithms, *preset.per_algorithm, *preset.per_algorithm_evaluation]
    assert all(name in ALGORITHMS for name in named)


FINN = {  # Finn et al. 2017 appendix A.1 and github.com/cbfinn/maml main.py
    5: {"meta_batch": 32, "inner_lr": 0.4, "inner_steps": 1, "test_steps": 3},
    20: {"meta_batch": 16, "inner_lr": 0.1, "inner_steps": 5, "test_steps": 5},
}


MAML_PLUS_PLUS = {  # HowToTrainYourMAMLPytorch omniglot_maml++-omniglot_{K}_8_0.1_64_{N}_0.json
    "iterations": 50000,
    "meta_batch": 8,
    "queries": 1,
    "inner_steps": 5,
    "inner_lr": 0.1,
    "msl_anneal_iterations": 5000,
    "first_order_iterations": 0,  # first_order_to_second_order_epoch -1
    "outer_lr_schedule": "cosine",
    "outer_lr_min": 1e-5,
    "outer_lr": 0.001,
}


@pytest.mark.parametrize(("ways", "shots"), PAPER_SETTINGS)
def test_paper_presets_hold_the_cited_values(ways: int, shots: int) -> None:
    preset = COMPARE_PRESETS.get(f"paper-{ways}way-{shots}shot")
    finn = FINN[ways]
    for name in ("maml", "fomaml"):
        train = build_config(TrainConfig, preset.train_values(name))
        evaluation = build_config(EvalConfig, preset.evaluation_values(name))
        assert (train.dataset, train.ways, train.shots) == ("omniglot", ways, shots)
        assert train.model == "conv4[downsample=stride]"  # their strided network
        assert (train.iterations, train.outer_lr, train.queries) == (60000, 0.001, shots)
        assert (train.meta_batch, train.inner_lr, train.inner_steps) == (
            finn["meta_batch"],
            finn["inner_lr"],
            finn["inner_steps"],
        )
        assert (evaluation.tasks, evaluation.inner_steps) == (600, finn["test_steps"])
    for name in ("mamlpp", "fomamlpp"):
        train = build_config(TrainConfig, preset.train_values(name))
        assert (train.ways, train.shots) == (ways, shots)
        assert {key: getattr(train, key) for key in MAML_PLUS_PLUS} == MAML_PLUS_PLUS
        assert train.model == "conv4"
        assert build_config(EvalConfig, preset.evaluation_values(name)).inner_steps is None


def test_paper_is_the_5way_1shot_preset() -> None:
    paper, named = COMPARE_PRESETS.get("paper"), COMPARE_PRESETS.get("paper-5way-1shot")
    assert paper.algorithms == named.algorithms
    for algorithm in ALGORITHMS:
        assert paper.train_values(algorithm) == named.train_values(algorithm)
        assert paper.evaluation_values(algorithm) == named.evaluation_values(algorithm)


def test_algorithms_without_values_of_their_own_get_the_shared_ones() -> None:
    preset = COMPARE_PRESETS.get("paper-20way-5shot")
    assert preset.train_values("someone-new") == {**preset.train, "algorithm": "someone-new"}
    assert preset.evaluation_values("someone-new") == preset.evaluation
    variant = "mamlpp[bn_per_step_stats=false]"  # a variant gets its preset's own values
    assert preset.train_values(variant) == {**preset.train_values("mamlpp"), "algorithm": variant}
    assert preset.evaluation_values(variant) == preset.evaluation_values("mamlpp")


def parse_train(args: list[str]) -> tuple[TrainConfig, dict | None]:
    return train_config(build_parser().parse_args(["train", "--out", "unused", *args]))


def test_train_preset_is_the_lowest_layer(tmp_path: Path) -> None:
    config, evaluation = parse_train(["--preset", "paper-20way-5shot"])
    assert (config.algorithm, config.ways, config.shots, config.inner_steps) == ("maml", 20, 5, 5)
    assert evaluation is not None and evaluation["inner_steps"] == 5
    file = tmp_path / "run.yaml"
    file.write_text(yaml.safe_dump({"algorithm": "mamlpp", "seed": 4, "meta_batch": 3}))
    config, evaluation = parse_train(["--preset", "paper-20way-5shot", "--config", str(file)])
    assert (config.algorithm, config.msl_anneal_iterations, config.queries) == ("mamlpp", 5000, 1)
    assert (config.seed, config.meta_batch) == (4, 3)  # the file beats the preset
    assert evaluation is not None and evaluation["inner_steps"] is None
    args = ["--preset", "paper-20way-5shot", "--config", str(file), "--algorithm", "fomaml"]
    config, _ = parse_train([*args, "--meta-batch", "2", "--ways", "7"])
    assert (config.algorithm, config.inner_lr, config.queries) == ("fomaml", 0.1, 5)
    assert (config.meta_batch, config.ways, config.seed) == (2, 7, 4)  # flags beat both
    config, evaluation = parse_train(["--ways", "7"])
    assert evaluation is None and config == build_config(TrainConfig, {"ways": 7})


def test_train_with_a_20way_preset_on_real_omniglot(
    omniglot_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--preset",
            "paper-20way-1shot",
            "--iterations",
            "2",
            "--meta-batch",
            "2",
            "--queries",
            "1",
            "--hidden",
            "8",
            "--device",
            "cpu",
            "--no-progress",
            "--data-root",
            str(omniglot_root),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["algorithm"], saved["ways"], saved["shots"]) == ("maml", 20, 1)
    assert (saved["inner_steps"], saved["inner_lr"]) == (5, 0.1)  # from the preset
    assert (saved["iterations"], saved["meta_batch"]) == (2, 2)  # flags override it
    assert f"mamlkit eval {out} --inner-steps 5" in printed


@pytest.mark.parametrize("command", ["train", "compare"])
def test_unknown_preset_is_a_one_line_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    code = main([command, "--preset", "paper-20way-1shott", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown compare preset 'paper-20way-1shott'; did you mean 'paper-20way-1shot'" in err
    assert err.count("\n") == 1 and not out.exists()
