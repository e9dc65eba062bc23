"""Omniglot's protocol options on the real archives: Lake et al.'s background/evaluation split
(``split_protocol="lake"``, ``--omniglot-split lake``) and within-alphabet episodes
(``--episodes within_alphabet``), with the default protocol left as it was."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mamlkit.data.omniglot as omniglot_module
from mamlkit.cli import build_parser, train_config
from mamlkit.data import EpisodeSampler, Omniglot, lake_split_characters, split_characters
from mamlkit.errors import ConfigError
from mamlkit.training import TrainConfig, build_dataset, build_sampler
from tests.helpers.fake_dataset import FakeDataset


def _characters_of(path: Path) -> set[str]:
    """ "Alphabet/characterNN" of every character in one archive, read independently."""
    with zipfile.ZipFile(path) as zf:
        parts = [m.split("/") for m in zf.namelist() if m.endswith(".png")]
    return {f"{alphabet}/{character}" for _, alphabet, character, _ in parts}


def _alphabet(name: str) -> str:
    return name.split("/", 1)[0]


@pytest.fixture(scope="module")
def archive_sets(omniglot_root: Path) -> dict[str, set[str]]:
    """The characters of the background and of the evaluation archive."""
    folder = omniglot_root / "omniglot"
    return {
        "background": _characters_of(folder / "images_background.zip"),
        "evaluation": _characters_of(folder / "images_evaluation.zip"),
    }


@pytest.fixture(scope="module")
def lake(omniglot_root: Path, data_cache_dir: Path) -> dict[str, Omniglot]:
    return {
        split: Omniglot(omniglot_root, split, split_protocol="lake", cache_dir=data_cache_dir)
        for split in ("train", "test")
    }


@pytest.fixture(scope="module")
def lake_val(omniglot_root: Path, data_cache_dir: Path) -> dict[str, Omniglot]:
    return {
        split: Omniglot(
            omniglot_root, split, validation=True, split_protocol="lake", cache_dir=data_cache_dir
        )
        for split in ("train", "val", "test")
    }


class Recording:
    """A dataset wrapper that records the class and sample indices of every ``get`` call."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dataset, name)

    def get(self, class_indices: Any, sample_indices: Any) -> torch.Tensor:
        self.calls.append((np.asarray(class_indices), np.asarray(sample_indices)))
        return self.dataset.get(class_indices, sample_indices)


def _task_classes(recording: Recording, sampler: EpisodeSampler) -> np.ndarray:
    """[B, N] classes of the last sampled meta-batch, in label order."""
    b, n = sampler.meta_batch, sampler.ways
    return recording.calls[-1][0].reshape(b, n, -1)[:, :, 0]


# --- the lake split ----------------------------------------------------------------------------


def test_lake_split_is_the_background_and_evaluation_archives(lake, archive_sets) -> None:
    train, test = lake["train"], lake["test"]
    assert (train.num_characters, test.num_characters) == (964, 659)
    assert set(train.characters) == archive_sets["background"]
    assert set(test.characters) == archive_sets["evaluation"]
    background = {_alphabet(c) for c in archive_sets["background"]}
    evaluation = {_alphabet(c) for c in archive_sets["evaluation"]}
    assert (len(background), len(evaluation)) == (30, 20)
    assert set(train.alphabets) == background and set(test.alphabets) == evaluation
    assert tuple(sorted(background)) == omniglot_module.BACKGROUND_ALPHABETS
    # Rotations stay as in the default protocol: on for train only.
    assert train.rotations and not test.rotations
    assert (train.num_classes, test.num_classes) == (964 * 4, 659)
    assert train.characters == sorted(train.characters)
    assert train.split_protocol == "lake" and "lake" in repr(train)


def test_class_alphabets_and_characters_follow_the_class_layout(lake) -> None:
    train, test = lake["train"], lake["test"]
    assert len(train.class_alphabets) == train.num_classes
    for c in (0, 1, 2, 3, 4, 1001, 3855):
        name = train.characters[c // 4]
        assert train.class_characters[c] == c // 4
        assert train.class_alphabets[c] == _alphabet(name)
        assert train.class_names[c].startswith(name)
    assert test.class_alphabets == [_alphabet(c) for c in test.characters]
    np.testing.assert_array_equal(test.class_characters, np.arange(659))
    assert not train.class_characters.flags.writeable


def test_lake_validation_holds_out_the_five_smallest_background_alphabets(
    lake, lake_val, archive_sets
) -> None:
    sizes = Counter(_alphabet(c) for c in archive_sets["background"])
    smallest = sorted(sizes, key=lambda a: (sizes[a], a))[:5]
    assert [sizes[a] for a in smallest] == [14, 14, 16, 17, 20]  # the 6th has 22: no tie
    train, val, test = lake_val["train"], lake_val["val"], lake_val["test"]
    assert (train.num_characters, val.num_characters, test.num_characters) == (883, 81, 659)
    assert val.alphabets == sorted(smallest) == list(omniglot_module.LAKE_VALIDATION_ALPHABETS)
    assert set(train.alphabets).isdisjoint(val.alphabets)
    assert set(train.characters) | set(val.characters) == set(lake["train"].characters)
    assert test.characters == lake["test"].characters
    assert train.rotations and not val.rotations


def test_lake_split_characters_needs_no_seed_and_ignores_global_rngs() -> None:
    names = ["Angelic/character01", "Greek/character02", "Tagalog/character01", "ULOG/c01"]
    torch.manual_seed(3)
    np.random.seed(3)
    np.testing.assert_array_equal(lake_split_characters(names, "train"), [1, 2])
    np.testing.assert_array_equal(lake_split_characters(names, "test"), [0, 3])
    np.testing.assert_array_equal(lake_split_characters(names, "val", validation=True), [2])
    np.testing.assert_array_equal(lake_split_characters(names, "train", validation=True), [1])


def test_archives_without_lakes_alphabets_are_refused() -> None:
    names = [f"Latin/character{i:02d}" for i in range(1, 27)]
    with pytest.raises(omniglot_module.OmniglotArchiveError, match=r"Lake et al\.'s alphabets"):
        omniglot_module._lake_characters(names, "train", False, [Path("a.zip"), Path("b.zip")])


# --- the default protocol is unchanged ---------------------------------------------------------


def _digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def test_the_vinyals_default_is_unchanged(omniglot_root, data_cache_dir) -> None:
    # Digests of the character lists the default protocol gave before the lake option existed.
    expected = {
        ("train", False): "1d1d760b92d14f1b",
        ("test", False): "7b70066da23e0006",
        ("val", True): "fa19e72e1e84fdff",
    }
    for (split, validation), digest in expected.items():
        default = Omniglot(omniglot_root, split, validation=validation, cache_dir=data_cache_dir)
        explicit = Omniglot(
            omniglot_root,
            split,
            validation=validation,
            split_protocol="vinyals",
            cache_dir=data_cache_dir,
        )
        assert default.split_protocol == "vinyals"
        assert default.characters == explicit.characters
        assert _digest(default.characters) == digest
        assert default.num_characters == len(split_characters(split, validation=validation))
        assert default.description == f"the omniglot {split!r} split"
    # Train and test mix alphabets, unlike the lake split.
    train = Omniglot(omniglot_root, "train", cache_dir=data_cache_dir)
    test = Omniglot(omniglot_root, "test", cache_dir=data_cache_dir)
    assert len(set(train.alphabets) & set(test.alphabets)) > 40


# --- within-alphabet episodes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "ways"), [("train", 5), ("train", 20), ("test", 5), ("test", 20)]
)
def test_within_alphabet_tasks_share_one_alphabet(lake, split: str, ways: int) -> None:
    dataset = Recording(lake[split])
    sampler = EpisodeSampler(
        dataset,
        ways,
        shots=1,
        queries=1,
        meta_batch=40,
        seed=5,
        groups=dataset.class_alphabets,
        sources=dataset.class_characters,
    )
    alphabets, rotations = Counter(), Counter()
    for _ in range(6):  # 240 tasks
        episode = sampler.sample()
        tasks = _task_classes(dataset, sampler)
        for task in tasks:
            names = {dataset.class_alphabets[c] for c in task}
            assert len(names) == 1, f"a task mixes alphabets: {names}"
            characters = dataset.class_characters[task]
            assert len(set(characters.tolist())) == ways, "a character appears twice in a task"
            alphabets.update(names)
            rotations.update((task % 4).tolist() if dataset.rotations else [0])
        # Label j of a task is its j-th class: its support image is that class's drawing.
        samples = dataset.calls[-1][1].reshape(40, ways, 2)[:, :, 0]
        expected = dataset.dataset.get(tasks[3], samples[3])
        torch.testing.assert_close(episode.support_x[3], expected, rtol=0, atol=0)
    per_alphabet = Counter(_alphabet(c) for c in dataset.characters)
    eligible = {a for a, count in per_alphabet.items() if count >= ways}
    assert set(alphabets) == eligible, "every alphabet with enough characters should be drawn"
    if dataset.rotations:
        assert set(rotations) == {0, 1, 2, 3}, "every rotation should appear"


def test_within_alphabet_skips_alphabets_with_too_few_characters(lake) -> None:
    train = Recording(lake["train"])
    sampler = EpisodeSampler(
        train, 20, 1, 1, 64, groups=train.class_alphabets, sources=train.class_characters
    )
    seen = set()
    for _ in range(5):
        sampler.sample()
        seen |= {train.class_alphabets[c] for c in _task_classes(train, sampler)[:, 0]}
    under_20 = {a for a, n in Counter(map(_alphabet, train.characters)).items() if n < 20}
    assert under_20 == {
        "Blackfoot_(Canadian_Aboriginal_Syllabics)",
        "Inuktitut_(Canadian_Aboriginal_Syllabics)",
        "Ojibwe_(Canadian_Aboriginal_Syllabics)",
        "Tagalog",
    }
    assert seen == set(train.alphabets) - under_20
    assert "groups=26" in repr(sampler)  # the 30 background alphabets less the 4 under 20


def test_config_wires_the_options_into_training_and_evaluation_samplers(omniglot_root) -> None:
    config = TrainConfig(
        data_root=str(omniglot_root),
        omniglot_split="lake",
        episodes="within_alphabet",
        ways=20,
        progress=False,
    )
    for split in ("train", "test"):
        dataset = build_dataset(config, split)
        assert isinstance(dataset, Omniglot) and dataset.split_protocol == "lake"
        recording = Recording(dataset)
        sampler = build_sampler(config, recording, queries=2, meta_batch=16, seed=1)
        assert sampler.grouped
        for _ in range(3):
            sampler.sample()
            for task in _task_classes(recording, sampler):
                assert len({dataset.class_alphabets[c] for c in task}) == 1
    default = TrainConfig(data_root=str(omniglot_root), progress=False)
    dataset = build_dataset(default, "test")
    assert dataset.split_protocol == "vinyals"
    plain = build_sampler(default, dataset, queries=2, meta_batch=4, seed=1)
    assert not plain.grouped and "groups" not in plain.state_dict()


def test_resume_is_exact_with_within_alphabet_episodes(lake) -> None:
    train = lake["train"]
    options = {"groups": train.class_alphabets, "sources": train.class_characters}
    original = EpisodeSampler(train, 5, 1, 3, 8, seed=4, **options)
    for _ in range(2):
        original.sample()
    state = json.loads(json.dumps(original.state_dict()))
    expected = [original.sample() for _ in range(3)]
    resumed = EpisodeSampler(train, 5, 1, 3, 8, seed=77, **options)
    resumed.load_state_dict(state)
    for want in expected:
        for x, y in zip(want, resumed.sample(), strict=True):
            torch.testing.assert_close(y, x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="within 30 groups, but this one draws them without"):
        EpisodeSampler(train, 5, 1, 3, 8).load_state_dict(state)


def test_twenty_way_within_alphabet_needs_alphabets_with_twenty_characters(
    omniglot_root, data_cache_dir
) -> None:
    # The vinyals test split scatters its 423 characters over all 50 alphabets.
    test = Omniglot(omniglot_root, "test", cache_dir=data_cache_dir)
    most = max(Counter(test.class_alphabets).values())
    with pytest.raises(ValueError, match=rf"no group of the omniglot 'test' split has 40 .*{most}"):
        EpisodeSampler(test, 40, 1, 1, 1, groups=test.class_alphabets)


# --- errors ------------------------------------------------------------------------------------


def test_omniglot_rejects_bad_protocol_arguments_before_reading_files() -> None:
    with pytest.raises(
        ValueError, match=r"unknown omniglot split protocol 'lakes'.*'vinyals', 'lake'"
    ):
        Omniglot("/nonexistent", "train", split_protocol="lakes")
    with pytest.raises(ValueError, match="split_seed applies only to the 'vinyals'"):
        Omniglot("/nonexistent", "train", split_protocol="lake", split_seed=2)
    with pytest.raises(ValueError, match="'val' exists only with validation=True"):
        Omniglot("/nonexistent", "val", split_protocol="lake")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"omniglot_split": "lakes"}, r"omniglot_split must be one of vinyals, lake, got 'lakes'"),
        ({"episodes": "alphabet"}, r"episodes must be one of any, within_alphabet, got 'alphabet'"),
        ({"omniglot_split": "lake", "split_seed": 3}, r"split_seed applies only to omniglot_split"),
        ({"omniglot_split": 1}, r"config key 'omniglot_split' must be str"),
    ],
)
def test_config_rejects_bad_values(values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values)


def test_options_are_refused_where_they_do_not_apply() -> None:
    sinusoid = {"dataset": "sinusoid", "model": "mlp"}
    for other in (sinusoid, {"dataset": "miniimagenet", "data_root": "/nonexistent"}):
        config = TrainConfig(**other, omniglot_split="lake")
        with pytest.raises(ConfigError, match="--omniglot-split lake applies only to omniglot"):
            build_dataset(config, "test")  # refused before any file is looked for
    regression = build_dataset(TrainConfig(**sinusoid), "test")
    config = TrainConfig(**sinusoid, episodes="within_alphabet")
    with pytest.raises(ConfigError, match="regression dataset: --episodes does not apply"):
        build_sampler(config, regression, queries=1, meta_batch=1, seed=0)
    # A classification dataset without alphabets.
    config = TrainConfig(episodes="within_alphabet")
    with pytest.raises(ConfigError, match="needs a dataset whose classes belong to alphabets"):
        build_sampler(config, FakeDataset(), queries=1, meta_batch=1, seed=0)


def test_command_line_flags(tmp_path) -> None:
    args = build_parser().parse_args(
        [
            *("train", "--out", str(tmp_path / "run")),
            *("--omniglot-split", "lake", "--episodes", "within_alphabet"),
        ]
    )
    config, _ = train_config(args)
    assert (config.omniglot_split, config.episodes) == ("lake", "within_alphabet")
    defaults = TrainConfig()
    assert (defaults.omniglot_split, defaults.episodes) == ("vinyals", "any")
